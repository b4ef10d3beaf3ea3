//! A checkpoint: everything needed to restart a pipeline as if it had never
//! stopped — the engine's state, where each source partition resumes, and
//! what each sink recorded to commit its epoch. Taken between two batches,
//! so the three agree.

use async_trait::async_trait;
use kpiflow_engine::SourcePosition;
use kpiflow_types::{Epoch, Prepared, Snapshot};

/// One consistent cut of a pipeline.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub epoch: Epoch,
    pub snapshot: Snapshot,
    /// Where each source partition resumes.
    pub positions: Vec<SourcePosition>,
    /// Per sink, what commits its share of the epoch.
    pub prepared: Vec<Prepared>,
}

/// Where checkpoints are kept. Saving is the commit point of an epoch: once
/// `save` returns, a restart resumes from this checkpoint.
#[async_trait]
pub trait CheckpointStore: Send {
    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), String>;
    /// The newest complete checkpoint, if any.
    async fn latest(&mut self) -> Result<Option<Checkpoint>, String>;
}
