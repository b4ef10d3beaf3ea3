//! The pipeline runner: drives a source's batches and dead letters into the
//! engine, ticks it, hands its output to the sinks and takes checkpoint cuts.
//!
//! `runner.rs` is the loop; `sinks.rs` runs each [`Sink`] on a task of its
//! own behind a bounded channel (a slow sink makes the runner wait, a failed
//! one stops it with the cause); a checkpoint cut (`kpiflow_types::Checkpoint`) is taken
//! between two batches: the engine's snapshot with its source positions, then every
//! sink's epoch prepared, then the checkpoint saved, then the sinks told to
//! commit; `memory.rs` has in-memory sinks and checkpoints for the demo and
//! tests; `progress.rs` is what the runner publishes after every tick for
//! readers beside it (the HTTP server).

mod durable;
mod error;
mod memory;
mod progress;
mod runner;
mod sinks;

pub use durable::{Durability, Recovered, recover, spawn_maintenance};
pub use error::{PipelineError, Result};
pub use kpiflow_types::{Checkpoint, CheckpointStore};
pub use memory::{MemoryCheckpoints, MemorySink};
pub use progress::{Progress, ViewProgress};
pub use runner::{Input, Pipeline, PipelineConfig, PipelineStats, Summary};

pub use kpiflow_types::{Sink, SinkError};
