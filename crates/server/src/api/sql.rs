//! `POST /api/sql`: one read-only query over the catalog (raw archive,
//! final views, late rows, dead letters, live views, reference tables),
//! with time, memory and row limits.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{AppError, ErrorBody, Result};
use crate::format::{self, Encoded, Format, Rows};
use crate::state::AppState;

/// A query.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SqlRequest {
    /// One statement: SELECT, WITH, SHOW, DESCRIBE or EXPLAIN.
    pub sql: String,
    /// json (default), csv or arrow.
    #[serde(default)]
    pub format: Format,
    /// Rows at most (default 1000; at most the server's max_rows).
    pub limit: Option<usize>,
}

/// Runs one read-only query. DDL, DML, COPY and statements (SET, …) are
/// refused with `sql_refused`; SQL errors carry the position the parser
/// names; a query over the time or memory limit fails with `timeout` or
/// `memory_limit` while the pipeline goes on.
#[utoipa::path(post, path = "/api/sql", tag = "sql", request_body = SqlRequest,
    responses((status = OK, body = Rows, description = "JSON, CSV or Arrow IPC as asked"),
              (status = BAD_REQUEST, body = ErrorBody), (status = REQUEST_TIMEOUT, body = ErrorBody),
              (status = UNPROCESSABLE_ENTITY, body = ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    Json(request): Json<SqlRequest>,
) -> Result<Encoded> {
    let limit = format::row_limit(request.limit, state.inner.config.max_rows)?;
    if request.sql.trim().is_empty() {
        return Err(AppError::bad_request("the query is empty"));
    }
    let answer = state.inner.sql.run(&request.sql, limit).await?;
    metrics::histogram!("kpiflow_http_sql_seconds").record(answer.elapsed.as_secs_f64());
    format::encode(
        request.format,
        &answer.schema,
        &answer.batches,
        answer.truncated,
        answer.elapsed.as_millis() as u64,
    )
}
