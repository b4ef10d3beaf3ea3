//! The tables kpiflow keeps, where each lives under the data root, its
//! columns and how it is partitioned:
//!
//! | table | path | partitioned by |
//! |---|---|---|
//! | `raw.<topic>` | `raw/<topic>/` | `event_date`, `event_hour` (of `event_time`) |
//! | `views.<view>` | `views/<view>/` | `window_date` (of `window_start`) |
//! | `late.<view>` | `late/<view>/` | `window_date` (of `window_start`) |
//! | `deadletters.<topic>` | `deadletters/<topic>/` | — |
//!
//! Partition columns are derived here from a time column and added to each
//! batch before it is written; readers see them as ordinary columns.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kpiflow_types::DeadLetter;

use crate::error::{Result, StorageError};

/// The kinds of table, each a schema in the query catalog and a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableKind {
    Raw,
    View,
    Late,
    DeadLetters,
}

impl TableKind {
    pub const ALL: [TableKind; 4] = [
        TableKind::Raw,
        TableKind::View,
        TableKind::Late,
        TableKind::DeadLetters,
    ];

    /// The folder under the data root, also the catalog schema's name.
    pub fn dir(self) -> &'static str {
        match self {
            TableKind::Raw => "raw",
            TableKind::View => "views",
            TableKind::Late => "late",
            TableKind::DeadLetters => "deadletters",
        }
    }
}

/// How a table's rows are spread over folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    None,
    /// `event_date` and `event_hour` of a timestamp column.
    DateHour {
        time: String,
    },
    /// `window_date` of a timestamp column.
    Date {
        time: String,
    },
}

pub const EVENT_DATE: &str = "event_date";
pub const EVENT_HOUR: &str = "event_hour";
pub const WINDOW_DATE: &str = "window_date";

/// One table: what it is, its columns as the pipeline produces them, and its partitioning.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub kind: TableKind,
    /// The topic or view.
    pub name: String,
    /// The columns written, without partition columns.
    pub schema: SchemaRef,
    pub partitioning: Partitioning,
}

impl TableSpec {
    /// `raw.<topic>`: every decoded row with its Kafka metadata.
    pub fn raw(topic: &str, schema: SchemaRef) -> TableSpec {
        TableSpec {
            kind: TableKind::Raw,
            name: topic.to_owned(),
            schema,
            partitioning: Partitioning::DateHour {
                time: kpiflow_types::stream::EVENT_TIME.to_owned(),
            },
        }
    }

    /// `views.<view>` (final rows) or `late.<view>`; windowed ones are
    /// partitioned by the date of `window_start`.
    pub fn view(kind: TableKind, view: &str, schema: SchemaRef) -> TableSpec {
        let partitioning = if schema.field_with_name("window_start").is_ok() {
            Partitioning::Date {
                time: "window_start".to_owned(),
            }
        } else {
            Partitioning::None
        };
        TableSpec {
            kind,
            name: view.to_owned(),
            schema,
            partitioning,
        }
    }

    /// `deadletters.<topic>`.
    pub fn dead_letters(topic: &str) -> TableSpec {
        TableSpec {
            kind: TableKind::DeadLetters,
            name: topic.to_owned(),
            schema: dead_letter_schema(),
            partitioning: Partitioning::None,
        }
    }

    /// `raw/sales`: the folder under the data root and the table's key.
    pub fn relative(&self) -> String {
        format!("{}/{}", self.kind.dir(), self.name)
    }

    /// `raw.sales`, as analysts query it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.kind.dir(), self.name)
    }

    pub fn partition_columns(&self) -> Vec<String> {
        match &self.partitioning {
            Partitioning::None => vec![],
            Partitioning::DateHour { .. } => vec![EVENT_DATE.into(), EVENT_HOUR.into()],
            Partitioning::Date { .. } => vec![WINDOW_DATE.into()],
        }
    }

    /// The table's schema: the columns written, then the partition columns.
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        match &self.partitioning {
            Partitioning::None => {}
            Partitioning::DateHour { .. } => {
                fields.push(Field::new(EVENT_DATE, DataType::Date32, false));
                fields.push(Field::new(EVENT_HOUR, DataType::Int32, false));
            }
            Partitioning::Date { .. } => {
                fields.push(Field::new(WINDOW_DATE, DataType::Date32, false));
            }
        }
        Arc::new(Schema::new(fields))
    }

    /// `batch` with the partition columns appended.
    pub fn with_partition_columns(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let time = match &self.partitioning {
            Partitioning::None => return Ok(batch.clone()),
            Partitioning::DateHour { time } | Partitioning::Date { time } => time,
        };
        let column = batch.column_by_name(time).ok_or_else(|| {
            StorageError::data(
                format!("partitioning {}", self.qualified()),
                format!("the rows have no column `{time}`"),
            )
        })?;
        let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
            .map_err(|e| StorageError::data(format!("partitioning {}", self.qualified()), e))?;
        let millis = millis
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| {
                StorageError::data(
                    format!("partitioning {}", self.qualified()),
                    format!("`{time}` is not a timestamp"),
                )
            })?;
        if millis.null_count() > 0 {
            return Err(StorageError::data(
                format!("partitioning {}", self.qualified()),
                format!("`{time}` has nulls"),
            ));
        }
        const DAY: i64 = 86_400_000;
        let dates = Date32Array::from_iter_values(
            millis.values().iter().map(|ms| ms.div_euclid(DAY) as i32),
        );
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(dates));
        if let Partitioning::DateHour { .. } = self.partitioning {
            let hours = Int32Array::from_iter_values(
                millis
                    .values()
                    .iter()
                    .map(|ms| (ms.rem_euclid(DAY) / 3_600_000) as i32),
            );
            columns.push(Arc::new(hours));
        }
        RecordBatch::try_new(self.table_schema(), columns)
            .map_err(|e| StorageError::data(format!("partitioning {}", self.qualified()), e))
    }
}

/// Columns of `deadletters.<topic>`.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "kafka_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, true),
        Field::new("kind", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// Dead letters as rows of [`dead_letter_schema`].
pub fn dead_letter_batch(dead: &[&DeadLetter]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(dead.iter().map(|d| &d.topic))),
        Arc::new(Int32Array::from_iter_values(
            dead.iter().map(|d| d.partition),
        )),
        Arc::new(Int64Array::from_iter_values(dead.iter().map(|d| d.offset))),
        Arc::new(
            TimestampMillisecondArray::from_iter(dead.iter().map(|d| d.timestamp_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(BinaryArray::from_iter(
            dead.iter().map(|d| d.key.as_deref()),
        )),
        Arc::new(BinaryArray::from_iter(
            dead.iter().map(|d| d.payload.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            dead.iter().map(|d| d.kind.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            dead.iter().map(|d| &d.reason),
        )),
    ];
    RecordBatch::try_new(dead_letter_schema(), columns)
        .map_err(|e| StorageError::data("dead letters as rows", e))
}
