//! Rows out, as the caller asked: JSON (columns and rows as arrays), CSV
//! with a header, or an Arrow IPC stream.

use axum::body::Bytes;
use axum::http::HeaderName;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::AppError;
use crate::json;

/// How rows come back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
    Arrow,
}

/// The JSON form of rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rows {
    pub columns: Vec<json::Column>,
    /// One array per row, in the columns' order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: usize,
    /// More rows were there than the limit.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

/// Rows asked for (default 1000), within 1 to `max`.
pub fn row_limit(asked: Option<usize>, max: usize) -> Result<usize, AppError> {
    let limit = asked.unwrap_or(1000);
    if limit == 0 || limit > max {
        return Err(AppError::bad_request(format!(
            "limit {limit}: give 1 to {max}"
        )));
    }
    Ok(limit)
}

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// An answer as it goes out: its body, written once, and what the
/// headers say of it. Cheap to clone (the body is shared), so the views
/// API keeps answers (see `answers`).
#[derive(Debug, Clone)]
pub struct Encoded {
    pub content_type: &'static str,
    /// More rows were there than the limit (`x-kpiflow-truncated`).
    pub truncated: bool,
    pub body: Bytes,
}

impl Encoded {
    pub fn json(body: Vec<u8>, truncated: bool) -> Encoded {
        Encoded {
            content_type: "application/json",
            truncated,
            body: body.into(),
        }
    }
}

impl IntoResponse for Encoded {
    fn into_response(self) -> Response {
        let truncated = if self.truncated { "true" } else { "false" };
        (
            [
                (CONTENT_TYPE, self.content_type),
                (HeaderName::from_static("x-kpiflow-truncated"), truncated),
            ],
            self.body,
        )
            .into_response()
    }
}

/// The rows written as `format` asks.
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    truncated: bool,
    elapsed_ms: u64,
) -> Result<Encoded, AppError> {
    // The batches' own schema (nullability can differ from the plan's).
    let schema = &batches
        .first()
        .map_or_else(|| schema.clone(), RecordBatch::schema);
    match format {
        Format::Json => {
            let rows = json::rows(batches, usize::MAX);
            let body = serde_json::to_vec(&Rows {
                columns: json::columns(schema),
                row_count: rows.len(),
                rows,
                truncated,
                elapsed_ms,
            })
            .map_err(|e| AppError::internal("writing JSON", e))?;
            Ok(Encoded::json(body, truncated))
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = WriterBuilder::new().with_header(true).build(&mut out);
                if batches.is_empty() {
                    writer
                        .write(&RecordBatch::new_empty(schema.clone()))
                        .map_err(|e| AppError::internal("writing CSV", e))?;
                }
                for batch in batches {
                    writer
                        .write(batch)
                        .map_err(|e| AppError::internal("writing CSV", e))?;
                }
            }
            Ok(Encoded {
                content_type: "text/csv; charset=utf-8",
                truncated,
                body: out.into(),
            })
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut writer = StreamWriter::try_new(&mut out, schema)
                    .map_err(|e| AppError::internal("writing Arrow IPC", e))?;
                for batch in batches {
                    writer
                        .write(batch)
                        .map_err(|e| AppError::internal("writing Arrow IPC", e))?;
                }
                writer
                    .finish()
                    .map_err(|e| AppError::internal("writing Arrow IPC", e))?;
            }
            Ok(Encoded {
                content_type: ARROW_STREAM,
                truncated,
                body: out.into(),
            })
        }
    }
}
