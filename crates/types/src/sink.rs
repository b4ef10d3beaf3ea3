//! What flows from the engine and the source to the sinks (tables, the live
//! store, alerts): a view's final or late rows, dead letters, and the
//! checkpoint epochs that group them. Defined here so that storage and the
//! pipeline runner share them without depending on the engine.
//!
//! A sink is driven by the pipeline runner on a task of its own, behind a
//! bounded hand-over: a slow sink makes the runner wait, it never fails a
//! push. Its calls come in order: `resume` once, before anything else; then
//! source batches, rows and dead letters of an epoch, then
//! `prepare_commit` for that epoch (everything before it belongs to the
//! epoch), then later `commit` once the checkpoint holding the epoch is
//! durable.

use std::fmt;

use arrow_array::RecordBatch;
use async_trait::async_trait;

use crate::source::{DeadLetter, SourceBatch};

/// Whether rows are a window's final result or events that came too late for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Emit {
    Final,
    Late,
}

impl Emit {
    pub fn name(self) -> &'static str {
        match self {
            Emit::Final => "final",
            Emit::Late => "late",
        }
    }
}

/// Rows one view emitted.
#[derive(Debug, Clone)]
pub struct ViewRows {
    pub view: String,
    pub kind: Emit,
    /// Never empty.
    pub rows: RecordBatch,
}

/// A checkpoint's number: one more than the previous checkpoint of the same
/// pipeline. Everything a sink receives between two checkpoint cuts belongs
/// to one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

impl Epoch {
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a sink needs recorded in a checkpoint to finish an epoch's commit
/// after a crash (e.g. the files it wrote, not yet visible). Opaque to the
/// runner; empty for sinks that keep nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    pub sink: String,
    pub payload: Vec<u8>,
}

/// A boxed error with its cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A sink could not take or commit rows. The pipeline stops cleanly with it.
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}` failed to {action}: {source}")]
pub struct SinkError {
    pub sink: String,
    /// What the sink was doing: "write rows", "write dead letters", "prepare epoch 3", …
    pub action: String,
    /// Worth trying again later (a store that timed out), as opposed to a
    /// failure that will repeat (no permission, bad data).
    pub retryable: bool,
    #[source]
    pub source: BoxError,
}

impl SinkError {
    pub fn new(sink: &str, action: impl Into<String>, source: impl Into<BoxError>) -> SinkError {
        SinkError {
            sink: sink.to_owned(),
            action: action.into(),
            retryable: false,
            source: source.into(),
        }
    }

    pub fn retryable(mut self) -> SinkError {
        self.retryable = true;
        self
    }
}

/// Where a pipeline's output goes. Implementations may wait (on I/O, on a
/// full queue of their own) but must not buffer without bound.
#[async_trait]
pub trait Sink: Send {
    /// Names the sink in errors and logs.
    fn name(&self) -> &str;

    /// The pipeline starts after the checkpoint of `from` (`None`: no
    /// checkpoint yet): finish that epoch's commit (a repeat is a no-op) and
    /// discard whatever was written after it (a crashed epoch's files), so
    /// that the epoch can be written again. Called once, before any other call.
    async fn resume(&mut self, from: Option<(Epoch, &Prepared)>) -> Result<(), SinkError> {
        match from {
            Some((epoch, prepared)) => self.commit(epoch, prepared).await,
            None => Ok(()),
        }
    }

    /// A batch of decoded source rows, as the engine got it (never a
    /// progress-only batch): the raw archive.
    async fn write_batch(&mut self, _batch: &SourceBatch) -> Result<(), SinkError> {
        Ok(())
    }

    /// A view's final or late rows.
    async fn write_rows(&mut self, rows: &ViewRows) -> Result<(), SinkError>;

    /// Records the source could not decode, in the order the source gave them.
    async fn write_dead_letters(&mut self, _dead: &[DeadLetter]) -> Result<(), SinkError> {
        Ok(())
    }

    /// Everything written since the previous epoch belongs to `epoch`: close
    /// it (written, not yet visible to readers) and say what the checkpoint
    /// must record to commit it.
    async fn prepare_commit(&mut self, epoch: Epoch) -> Result<Prepared, SinkError> {
        let _ = epoch;
        Ok(Prepared {
            sink: self.name().to_owned(),
            payload: Vec::new(),
        })
    }

    /// The checkpoint holding `epoch` is durable: make the epoch visible.
    /// Called again with the same epoch after a crash; a repeat is a no-op.
    async fn commit(&mut self, epoch: Epoch, prepared: &Prepared) -> Result<(), SinkError> {
        let _ = (epoch, prepared);
        Ok(())
    }
}
