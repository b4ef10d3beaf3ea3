//! The HTTP service beside a running pipeline (`run --http`, `demo`): the
//! server reads the pipeline's views, live rows and progress, the tables
//! under its data location and the reference tables.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use kpiflow_ingest::source::SourceHandle;
use kpiflow_pipeline::Pipeline;
use kpiflow_server::{AppState, Readiness, ServerConfig, Sources};
use kpiflow_storage::DataLocation;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server that is listening.
pub struct Serving {
    pub addr: SocketAddr,
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` and serves until `cancel` (open event streams end then).
pub async fn start(
    addr: SocketAddr,
    config: ServerConfig,
    pipeline: &Pipeline,
    location: DataLocation,
    source: SourceHandle,
    cancel: CancellationToken,
) -> anyhow::Result<Serving> {
    let engine = pipeline.engine();
    let mut references = Vec::new();
    for (name, _) in crate::views::REFERENCES {
        if let Ok(table) = engine.context().table_provider(*name).await {
            references.push(((*name).to_owned(), table));
        }
    }
    let sources = Sources {
        views: engine.views(),
        live: pipeline.live(),
        progress: pipeline.progress(),
        location,
        references,
        ready: Arc::new(move || Readiness {
            partitions: source.assignment().len(),
        }),
    };
    let state = AppState::new(config, sources, cancel.clone()).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (in use, or not an address of this machine): pick another with --http")
    })?;
    let addr = listener.local_addr().context("the listening address")?;
    let task = tokio::spawn(kpiflow_server::serve(listener, state, cancel));
    Ok(Serving { addr, task })
}
