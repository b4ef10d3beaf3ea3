//! The storage crate's one error enum, split by what the caller can do.

use kpiflow_types::SinkError;

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data location (a directory or URL) or its options are wrong:
    /// fix the configuration and start again.
    #[error("data location `{location}`: {problem}")]
    Location { location: String, problem: String },
    /// The object store refused or failed a request (permissions, a wrong
    /// endpoint, the network). Often worth retrying later.
    #[error("object store, {action}: {source}")]
    ObjectStore {
        action: String,
        #[source]
        source: object_store::Error,
    },
    /// A Delta table could not be read, created or committed.
    #[error("Delta table `{table}`, {action}: {source}")]
    Delta {
        table: String,
        action: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// A checkpoint's files are damaged or of another format.
    #[error("checkpoint {path}: {problem}")]
    Corrupt { path: String, problem: String },
    /// Tables and checkpoints disagree (a damaged newest checkpoint was
    /// skipped, but a table already holds its epoch).
    #[error("table `{table}`: {problem}")]
    Inconsistent { table: String, problem: String },
    /// The data location belongs to another pipeline.
    #[error(
        "data location `{location}` belongs to pipeline `{owner}`, not `{pipeline}`: \
         start with --pipeline-id {owner}, or give this pipeline another --data"
    )]
    OtherPipeline {
        location: String,
        owner: String,
        pipeline: String,
    },
    /// Arrow, Parquet or DataFusion refused data (a bug or a schema change).
    #[error("{action}: {source}")]
    Data {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A wait that has a bound ran out.
    #[error("{what} did not finish within {seconds} s")]
    Timeout { what: String, seconds: u64 },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn store(action: impl Into<String>, source: object_store::Error) -> StorageError {
        StorageError::ObjectStore {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn delta(
        table: impl Into<String>,
        action: impl Into<String>,
        source: deltalake::DeltaTableError,
    ) -> StorageError {
        StorageError::Delta {
            table: table.into(),
            action: action.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn data(
        action: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StorageError {
        StorageError::Data {
            action: action.into(),
            source: source.into(),
        }
    }

    /// Whether trying again later may succeed (the store or the network).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            StorageError::ObjectStore { .. } | StorageError::Timeout { .. }
        )
    }

    /// As a sink's error, keeping the cause.
    pub(crate) fn into_sink(self, sink: &str, action: impl Into<String>) -> SinkError {
        let retryable = self.retryable();
        let mut error = SinkError::new(sink, action, self);
        error.retryable = retryable;
        error
    }
}
