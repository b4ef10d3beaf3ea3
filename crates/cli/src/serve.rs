//! The services beside a running pipeline (`run --http/--pg`, `demo`): the
//! HTTP side and the Postgres wire protocol read the pipeline's views, live
//! rows and progress, the tables under its data location and the reference
//! tables, through one SQL service (one catalog, one set of limits).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use kpiflow_ingest::source::SourceHandle;
use kpiflow_pg::PgConfig;
use kpiflow_pipeline::Pipeline;
use kpiflow_server::{AppState, Readiness, ServerConfig, Sources};
use kpiflow_storage::DataLocation;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where to serve; `None`: not that one.
pub struct Listeners {
    pub http: Option<SocketAddr>,
    pub pg: Option<SocketAddr>,
    /// Postgres connections served at once.
    pub pg_max_connections: usize,
}

/// Services that are listening.
pub struct Serving {
    pub http: Option<SocketAddr>,
    pub pg: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Serving {
    /// Waits for the services to end (after `cancel`), at most `timeout`.
    pub async fn stopped(self, timeout: std::time::Duration) {
        let all = futures::future::join_all(self.tasks);
        let _ = tokio::time::timeout(timeout, all).await;
    }
}

/// Binds the addresses of `listen` and serves until `cancel` (open event
/// streams and Postgres connections end then).
pub async fn start(
    listen: Listeners,
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
    let mut serving = Serving {
        http: None,
        pg: None,
        tasks: Vec::new(),
    };
    if let Some(addr) = listen.pg {
        let pg_config = PgConfig {
            tokens: state.config().tokens.clone(),
            max_rows: state.config().max_rows,
            max_connections: listen.pg_max_connections,
            ..PgConfig::default()
        };
        let (bound, task) = kpiflow_pg::start(addr, state.sql().clone(), pg_config, cancel.clone())
            .await
            .with_context(|| {
                format!("cannot listen on {addr} for Postgres clients (in use, or not an address of this machine): pick another with --pg")
            })?;
        serving.pg = Some(bound);
        serving.tasks.push(tokio::spawn(async move {
            match task.await {
                Ok(Err(e)) => tracing::error!(error = %e, "the Postgres port stopped"),
                Err(e) => tracing::error!(error = %e, "the Postgres port failed"),
                Ok(Ok(())) => {}
            }
        }));
    }
    if let Some(addr) = listen.http {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (in use, or not an address of this machine): pick another with --http")
        })?;
        serving.http = Some(listener.local_addr().context("the listening address")?);
        serving.tasks.push(tokio::spawn(async move {
            if let Err(e) = kpiflow_server::serve(listener, state, cancel).await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        }));
    }
    Ok(serving)
}
