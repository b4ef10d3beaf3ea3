//! A checkpoint: everything needed to restart a pipeline as if it had never
//! stopped — the engine's state, where each source partition resumes, and
//! what each sink recorded to commit its epoch. Taken between two batches,
//! so the three agree. Defined here so that the runner takes checkpoints
//! and storage keeps them without either depending on the other.

use async_trait::async_trait;

use crate::sink::{BoxError, Epoch, Prepared};
use crate::snapshot::Snapshot;

/// Where one source partition resumes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePosition {
    pub stream: String,
    pub partition: i32,
    /// Offset of the next record to read.
    pub next_offset: i64,
}

/// One consistent cut of a pipeline.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub epoch: Epoch,
    pub snapshot: Snapshot,
    /// Where each source partition resumes: also the partitions this worker owned.
    pub positions: Vec<SourcePosition>,
    /// Per sink, what commits its share of the epoch.
    pub prepared: Vec<Prepared>,
}

/// Where checkpoints are kept. Saving is the commit point of an epoch: once
/// `save` returns, a restart resumes from this checkpoint.
#[async_trait]
pub trait CheckpointStore: Send {
    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), BoxError>;
    /// The newest complete checkpoint, if any.
    async fn latest(&mut self) -> Result<Option<Checkpoint>, BoxError>;
}
