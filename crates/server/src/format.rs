//! Rows out, as the caller asked: JSON (columns and rows as arrays), CSV
//! with a header, or an Arrow IPC stream.

use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use flate2::write::GzEncoder;
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
    /// The body gzipped, made once when a client first accepts it (shared
    /// by the clones): a kept answer is not compressed again per request.
    gzipped: Arc<OnceLock<Bytes>>,
}

/// Bodies smaller than this go out as they are.
const GZIP_FROM_BYTES: usize = 1024;

impl Encoded {
    pub fn new(content_type: &'static str, body: Vec<u8>, truncated: bool) -> Encoded {
        Encoded {
            content_type,
            truncated,
            body: body.into(),
            gzipped: Arc::default(),
        }
    }

    pub fn json(body: Vec<u8>, truncated: bool) -> Encoded {
        Encoded::new("application/json", body, truncated)
    }

    /// The response, gzipped when the request's `accept-encoding` allows
    /// it (the compression layer leaves a response with a
    /// `content-encoding` alone).
    pub fn respond(self, request: &HeaderMap) -> Response {
        let accepts_gzip = request
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"));
        if !accepts_gzip || self.body.len() < GZIP_FROM_BYTES {
            return self.into_response();
        }
        let gzipped = self
            .gzipped
            .get_or_init(|| {
                let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                // Writing into a Vec cannot fail.
                let _ = encoder.write_all(&self.body);
                encoder.finish().unwrap_or_default().into()
            })
            .clone();
        let mut response = self.with_body(gzipped);
        let headers = response.headers_mut();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        response
    }

    fn with_body(&self, body: Bytes) -> Response {
        let truncated = if self.truncated { "true" } else { "false" };
        (
            [
                (CONTENT_TYPE, self.content_type),
                (HeaderName::from_static("x-kpiflow-truncated"), truncated),
            ],
            body,
        )
            .into_response()
    }
}

impl IntoResponse for Encoded {
    fn into_response(self) -> Response {
        self.with_body(self.body.clone())
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
            Ok(Encoded::new("text/csv; charset=utf-8", out, truncated))
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
            Ok(Encoded::new(ARROW_STREAM, out, truncated))
        }
    }
}
