//! What a Kafka source hands downstream: decoded record batches with the
//! per-partition progress the engine's watermarks need, and dead letters for
//! records that could not be decoded. Defined here so that the engine and
//! storage can take them without knowing Kafka.

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::stream::{Stream, timestamp_ms};

/// Metadata column: the Kafka partition a row came from (`INT32`).
pub const PARTITION_COLUMN: &str = "_partition";
/// Metadata column: the row's Kafka offset (`INT64`).
pub const OFFSET_COLUMN: &str = "_offset";
/// Metadata column: the Kafka message timestamp (`TIMESTAMP(ms, UTC)`, null when absent).
pub const KAFKA_TS_COLUMN: &str = "_kafka_ts";

impl Stream {
    /// The stream's schema followed by the Kafka metadata columns: the schema of
    /// every [`SourceBatch`] of this stream.
    pub fn source_schema(self) -> SchemaRef {
        let schema = self.schema();
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(
            PARTITION_COLUMN,
            DataType::Int32,
            false,
        )));
        fields.push(Arc::new(Field::new(OFFSET_COLUMN, DataType::Int64, false)));
        fields.push(Arc::new(Field::new(KAFKA_TS_COLUMN, timestamp_ms(), true)));
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }
}

/// Where one partition of a stream stands, as of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: i32,
    /// Largest event time (epoch ms) seen on the partition so far, if any.
    pub max_event_time_ms: Option<i64>,
    /// Offset of the next record to read: everything before it is in a batch
    /// or a dead letter already handed downstream; -1 while unknown (no
    /// record seen and no committed offset).
    pub next_offset: i64,
    /// Caught up with the partition's end and nothing new for the idle
    /// timeout. Never true for a partition paused by back-pressure or lagging.
    pub idle: bool,
}

/// Decoded rows of one stream, in Kafka order per partition.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub stream: Stream,
    /// Rows with [`Stream::source_schema`]; may be empty (a progress-only batch).
    pub rows: RecordBatch,
    /// Progress of every partition of the stream this source holds.
    pub partitions: Vec<PartitionProgress>,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterKind {
    /// Not exactly one JSON object.
    InvalidJson,
    /// A field's value has the wrong JSON type.
    WrongType,
    /// A required field is absent or null.
    MissingField,
    /// `event_time` (or another time field) is not RFC 3339 or epoch milliseconds.
    BadTimestamp,
    /// No payload (a tombstone or empty message).
    EmptyPayload,
    /// A time field parsed but lies outside the source's sane range (by
    /// default 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z, see
    /// [`TimeBounds`](crate::time::TimeBounds)): most often epoch
    /// microseconds or nanoseconds sent as milliseconds, or a placeholder
    /// such as `i64::MAX`. Accepted, it would move watermarks to a year no
    /// other event reaches.
    TimeOutOfRange,
    /// `event_time` is further ahead of the wall clock than the source
    /// allows (by default a day): a producer clock or time zone gone wrong.
    /// Past times are never refused for their age.
    FutureTime,
    /// Anything else the decoder refused; the reason has its message.
    Other,
}

impl DeadLetterKind {
    /// The kind's name in metrics and tables.
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterKind::InvalidJson => "invalid_json",
            DeadLetterKind::WrongType => "wrong_type",
            DeadLetterKind::MissingField => "missing_field",
            DeadLetterKind::BadTimestamp => "bad_timestamp",
            DeadLetterKind::EmptyPayload => "empty_payload",
            DeadLetterKind::TimeOutOfRange => "time_out_of_range",
            DeadLetterKind::FutureTime => "future_time",
            DeadLetterKind::Other => "other",
        }
    }
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record that could not be decoded, with everything needed to find,
/// understand and replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Kafka message timestamp, epoch ms.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub kind: DeadLetterKind,
    /// What is wrong, naming the field or the position of the syntax error.
    pub reason: String,
}
