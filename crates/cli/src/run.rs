//! `kpiflow run`: the pipeline against a real Kafka cluster and object
//! store, configured by `config` (`--print-config` shows the settings):
//! the data location checked and claimed, the newest checkpoint recovered
//! (tables rolled forward, a crashed epoch's files deleted, the engine
//! restored), the source started at the checkpoint's offsets, then
//! checkpoints every interval; with `--http` (`server.listen`) the
//! dashboards and APIs beside it. SIGINT or SIGTERM: a final checkpoint,
//! exit 0.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kpiflow_ingest::source::start;
use kpiflow_pipeline::{Durability, Input, PipelineConfig};
use kpiflow_storage::{MaintenanceConfig, TableKind};
use kpiflow_types::Stream;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::args::RunArgs;
use crate::config::{self, ConfigErrors, RunConfig};

/// How long the final checkpoint and shutdown may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded: Result<RunConfig, ConfigErrors> = config::load(&args);
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            // A usage error, like a bad flag: exit 2.
            eprintln!("error: {errors}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    // Listening from the start: a signal during recovery is kept and
    // honoured once the pipeline runs (a final checkpoint, exit 0) instead
    // of killing the process halfway.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let options = config.store_options();
    let data = config.data.to_string();
    let location = kpiflow_storage::DataLocation::open(&data, &options)?;
    let engine = crate::views::engine_with(config.engine_config(), &config.views).await?;
    let durability = Durability {
        location,
        pipeline_id: config.pipeline.id.clone(),
        keep_checkpoints: config.checkpoint.keep as usize,
        raw: Stream::ALL
            .into_iter()
            .filter(|s| config.raw.archives(*s))
            .collect(),
    };
    let pipeline_config = PipelineConfig {
        checkpoint_interval: Some(config.checkpoint.interval),
        ..PipelineConfig::default()
    };
    let cancel = CancellationToken::new();
    let recovered = kpiflow_pipeline::recover(engine, pipeline_config, &durability).await?;
    if recovered.epoch == 0 {
        eprintln!(
            "kpiflow run: pipeline `{}`, data {data}: no checkpoint yet, starting from the committed offsets",
            config.pipeline.id
        );
    } else {
        eprintln!(
            "kpiflow run: pipeline `{}`, data {data}: resuming after checkpoint {}",
            config.pipeline.id, recovered.epoch
        );
    }
    let maintenance = config.compaction.interval.map(|every| {
        let retention = TableKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, config.retention.of(kind)?)))
            .collect();
        kpiflow_pipeline::spawn_maintenance(
            durability.location.clone(),
            every,
            MaintenanceConfig {
                target_file_size: config.compaction.target_file_size,
                retention,
            },
            cancel.clone(),
        )
    });
    let mut source_config = config.source_config();
    source_config.start_offsets = recovered.start_offsets;
    let mut source = start(source_config, cancel.clone()).await?;
    let serving = match (config.server.listen, config.pg.listen) {
        (None, None) => None,
        (http, pg) => {
            let server_config = config
                .server
                .server_config(Some(config.checkpoint.interval));
            let auth = if server_config.tokens.is_empty() {
                "no auth"
            } else {
                "tokens required"
            };
            let listen = crate::serve::Listeners {
                http,
                pg,
                pg_max_connections: config.pg.max_connections,
            };
            let serving = crate::serve::start(
                listen,
                server_config,
                &recovered.pipeline,
                durability.location.clone(),
                source.handle.clone(),
                cancel.clone(),
            )
            .await?;
            if let Some(addr) = serving.http {
                eprintln!("kpiflow run: serving http://{addr} ({auth})");
            }
            if let Some(addr) = serving.pg {
                eprintln!("kpiflow run: Postgres wire protocol on {addr} ({auth})");
            }
            Some(serving)
        }
    };
    let input = Input::from(&mut source);
    let mut pipeline = tokio::spawn(recovered.pipeline.run(input, cancel.clone()));
    let finished = tokio::select! {
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
        done = &mut pipeline => Some(done),
    };
    cancel.cancel();
    let done = match finished {
        Some(done) => done,
        None => tokio::time::timeout(SHUTDOWN_TIMEOUT, pipeline)
            .await
            .context("the final checkpoint did not finish in time")?,
    };
    let summary = done.context("the pipeline task failed")??;
    if let Some(serving) = serving {
        serving.stopped(SHUTDOWN_TIMEOUT).await;
    }
    if let Some(task) = maintenance {
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, task).await;
    }
    tokio::time::timeout(SHUTDOWN_TIMEOUT, source.task)
        .await
        .context("the source did not stop in time")?
        .context("the source task failed")??;
    eprintln!(
        "kpiflow run: stopped after {} checkpoints: {} rows, {} dead letters, {} final and {} late view rows",
        summary.checkpoints,
        summary.rows,
        summary.dead_letters,
        summary.final_rows,
        summary.late_rows
    );
    Ok(ExitCode::SUCCESS)
}
