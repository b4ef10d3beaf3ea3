//! Sinks and checkpoints in memory: what the demo and tests use when
//! nothing must outlive the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use async_trait::async_trait;
use kpiflow_types::{DeadLetter, Emit, Sink, SinkError, ViewRows};

use kpiflow_types::{BoxError, Checkpoint, CheckpointStore};

#[derive(Default, Debug)]
struct Written {
    rows: HashMap<(String, Emit), Vec<RecordBatch>>,
    dead_letters: Vec<DeadLetter>,
}

/// Keeps everything written in memory; clones share the same rows.
#[derive(Clone, Default, Debug)]
pub struct MemorySink {
    written: Arc<Mutex<Written>>,
}

impl MemorySink {
    /// Everything written for `view` of `kind` so far.
    pub fn batches(&self, view: &str, kind: Emit) -> Vec<RecordBatch> {
        self.lock()
            .rows
            .get(&(view.to_owned(), kind))
            .cloned()
            .unwrap_or_default()
    }

    pub fn rows(&self, view: &str, kind: Emit) -> usize {
        self.batches(view, kind)
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead_letters.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }

    async fn write_rows(&mut self, rows: &ViewRows) -> Result<(), SinkError> {
        self.lock()
            .rows
            .entry((rows.view.clone(), rows.kind))
            .or_default()
            .push(rows.rows.clone());
        Ok(())
    }

    async fn write_dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        self.lock().dead_letters.extend_from_slice(dead);
        Ok(())
    }
}

/// Keeps the newest checkpoint in memory; clones share it.
#[derive(Clone, Default)]
pub struct MemoryCheckpoints {
    latest: Arc<Mutex<Option<Checkpoint>>>,
}

#[async_trait]
impl CheckpointStore for MemoryCheckpoints {
    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), BoxError> {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(checkpoint.clone());
        Ok(())
    }

    async fn latest(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        Ok(self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }
}
