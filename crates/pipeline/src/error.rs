use kpiflow_types::SinkError;

/// Why a pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The engine refused a batch or failed (see its class: bad input or a bug).
    #[error(transparent)]
    Engine(#[from] kpiflow_engine::Error),
    /// A sink failed; the pipeline stopped without losing what was committed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The data location could not be opened, checked or recovered.
    #[error(transparent)]
    Storage(#[from] kpiflow_storage::StorageError),
    /// Saving or loading a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[source] kpiflow_types::BoxError),
    /// A wait that has a bound ran out.
    #[error("{what} did not finish within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    /// A task of the runner died (a panic): a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
