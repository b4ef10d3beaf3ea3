//! A pipeline whose output outlives it: the engine's views, the raw
//! archive and the dead letters into Delta tables under one data location,
//! checkpoints beside them, and recovery from the newest one — the wiring
//! `kpiflow run` and `kpiflow demo` share.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use kpiflow_engine::Engine;
use kpiflow_storage::{
    DataLocation, DeltaSink, MaintenanceConfig, ObjectCheckpoints, TableKind, TableSpec,
};
use kpiflow_types::Stream;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::runner::{Pipeline, PipelineConfig};

/// Where and how a durable pipeline keeps its output.
#[derive(Debug, Clone)]
pub struct Durability {
    pub location: DataLocation,
    /// The application id of every Delta commit and the checkpoints' folder.
    pub pipeline_id: String,
    /// Checkpoints kept (at least 2).
    pub keep_checkpoints: usize,
    /// Topics whose decoded rows go to `raw.<topic>`.
    pub raw: BTreeSet<Stream>,
}

/// A pipeline recovered from the newest checkpoint under the location, and
/// the offsets its source must start from (empty: no checkpoint yet).
pub struct Recovered {
    pub pipeline: Pipeline,
    pub start_offsets: HashMap<(String, i32), i64>,
    /// The epoch of the checkpoint resumed from (0: none).
    pub epoch: u64,
}

/// Checks that the location can be written and belongs to this pipeline,
/// opens its tables (creating the missing ones), recovers, and returns the
/// pipeline ready to run.
pub async fn recover(
    engine: Engine,
    config: PipelineConfig,
    durability: &Durability,
) -> Result<Recovered> {
    let location = &durability.location;
    location.check().await?;
    location.claim(&durability.pipeline_id).await?;
    let mut specs = Vec::new();
    for view in engine.views() {
        specs.push(TableSpec::view(
            TableKind::View,
            &view.name,
            view.schema.clone(),
        ));
    }
    for stream in Stream::ALL {
        if durability.raw.contains(&stream) {
            specs.push(TableSpec::raw(stream.name(), stream.source_schema()));
        }
        specs.push(TableSpec::dead_letters(stream.name()));
    }
    let sink = DeltaSink::open(
        location.clone(),
        &durability.pipeline_id,
        specs,
        durability.raw.clone(),
    )
    .await?;
    let mut pipeline = Pipeline::new(engine, config);
    pipeline.add_sink(Box::new(sink));
    pipeline.set_checkpoints(Box::new(ObjectCheckpoints::new(
        location.clone(),
        &durability.pipeline_id,
        durability.keep_checkpoints,
    )));
    let start_offsets = pipeline.recover().await?.unwrap_or_default();
    let epoch = pipeline.epoch().0;
    Ok(Recovered {
        pipeline,
        start_offsets,
        epoch,
    })
}

/// Compacts and expires the location's tables every `every` until
/// `cancel`, on a task of its own: a failed pass is logged and retried at
/// the next one, never fatal to the pipeline.
pub fn spawn_maintenance(
    location: DataLocation,
    every: Duration,
    config: MaintenanceConfig,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            match kpiflow_storage::maintain(&location, &config).await {
                Ok(report) => tracing::info!(?report, "maintenance pass"),
                Err(e) => {
                    tracing::warn!(error = %e, "maintenance pass failed; retried at the next one")
                }
            }
        }
    })
}
