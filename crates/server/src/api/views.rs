//! `GET /api/views` (what each view is and where it stands),
//! `GET /api/views/{name}` (its rows: committed history from
//! `views.<name>` joined with the live rows after it) and
//! `GET /api/views/{name}/stream` (SSE of its live rows).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use kpiflow_engine::{ViewInfo, WINDOW_START, WindowSpec};
use kpiflow_storage::Catalog;

use crate::answers::Version;
use crate::error::{AppError, ErrorBody, Result};
use crate::format::{self, Format, Rows};
use crate::json;
use crate::sql::{literal, quote};
use crate::sse;
use crate::state::AppState;

/// A view's window.
#[derive(Debug, Serialize, ToSchema)]
pub struct Window {
    /// tumble, hop or session.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slide_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_ms: Option<i64>,
}

/// A view and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewSummary {
    pub name: String,
    pub description: String,
    pub columns: Vec<json::Column>,
    pub window: Option<Window>,
    /// Windows ending at or before it are final (Unix ms).
    pub watermark_ms: Option<i64>,
    /// The newest event time its inputs have seen (Unix ms).
    pub newest_event_ms: Option<i64>,
    /// How far the newest event is behind the wall clock (ms).
    pub freshness_ms: Option<i64>,
    pub open_groups: usize,
    /// Final rows emitted since the process started.
    pub final_rows: u64,
    /// Late rows since the process started.
    pub late_rows: u64,
    /// Rows in the live store now (running and recent final).
    pub live_rows: usize,
}

fn window(spec: Option<&WindowSpec>) -> Option<Window> {
    Some(match spec? {
        WindowSpec::Tumble { size, .. } => Window {
            kind: "tumble",
            size_ms: Some(*size),
            slide_ms: None,
            gap_ms: None,
        },
        WindowSpec::Hop { slide, size } => Window {
            kind: "hop",
            size_ms: Some(*size),
            slide_ms: Some(*slide),
            gap_ms: None,
        },
        WindowSpec::Session { gap } => Window {
            kind: "session",
            size_ms: None,
            slide_ms: None,
            gap_ms: Some(*gap),
        },
    })
}

/// Every view: columns, window, watermark, freshness and row counts.
#[utoipa::path(get, path = "/api/views", tag = "views",
    responses((status = OK, body = Vec<ViewSummary>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ViewSummary>> {
    let progress = state.inner.sources.progress.borrow().clone();
    let now = chrono::Utc::now().timestamp_millis();
    let live = &state.inner.sources.live;
    Json(
        state
            .inner
            .sources
            .views
            .iter()
            .map(|v| {
                let p = progress.views.get(&v.name).cloned().unwrap_or_default();
                ViewSummary {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    columns: json::columns(&v.schema),
                    window: window(v.window.as_ref()),
                    watermark_ms: p.watermark_ms,
                    newest_event_ms: p.newest_event_ms,
                    freshness_ms: p.newest_event_ms.map(|t| now - t),
                    open_groups: p.open_groups,
                    final_rows: p.final_rows,
                    late_rows: p.late_rows,
                    live_rows: live
                        .rows(&v.name)
                        .map_or(0, |(_, b)| b.iter().map(|b| b.num_rows()).sum()),
                }
            })
            .collect(),
    )
}

/// Which rows of a view.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RowsQuery {
    /// Windows starting at or after (RFC 3339 or Unix ms).
    pub since: Option<String>,
    /// Windows starting before (RFC 3339 or Unix ms).
    pub until: Option<String>,
    /// Key columns' values, `column:value` separated by commas (e.g. `channel:online,region:north`).
    pub key: Option<String>,
    /// true: final rows only; false: running rows only; absent: both.
    #[serde(rename = "final")]
    pub is_final: Option<bool>,
    /// Rows at most (default 1000).
    pub limit: Option<usize>,
    /// json (default), csv or arrow.
    pub format: Option<Format>,
}

fn time(what: &str, text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            AppError::bad_request(format!(
                "{what} '{text}': {e}; give RFC 3339 (2026-11-11T10:00:00Z) or Unix milliseconds"
            ))
        })
}

pub(crate) fn find<'a>(state: &'a AppState, name: &str) -> Result<&'a ViewInfo> {
    let views = &state.inner.sources.views;
    views.iter().find(|v| v.name == name).ok_or_else(|| {
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        AppError::NotFound(format!("no view '{name}'; there are {}", names.join(", ")))
    })
}

/// The view's rows, newest window first: committed history from
/// `views.<name>`, then the live rows after the newest committed window
/// (running values of open windows, and final ones not committed yet),
/// each with `is_final`. Answers are as of the pipeline's last tick: the
/// same question within one tick is answered from memory
/// (`x-kpiflow-cache: hit`).
#[utoipa::path(get, path = "/api/views/{name}", tag = "views",
    params(("name" = String, Path, description = "The view"), RowsQuery),
    responses((status = OK, body = Rows, description = "JSON, CSV or Arrow IPC as asked"),
              (status = BAD_REQUEST, body = ErrorBody), (status = NOT_FOUND, body = ErrorBody)))]
pub async fn rows(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RowsQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let view = find(&state, &name)?;
    if view.schema.column_with_name(WINDOW_START).is_none() {
        return Err(AppError::bad_request(format!(
            "view '{name}' has no windows; query it with POST /api/sql"
        )));
    }
    let limit = format::row_limit(q.limit, state.inner.config.max_rows)?;
    let columns: Vec<String> = view
        .schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect();
    let columns = columns.join(", ");
    let start = quote(WINDOW_START);
    let mut filters = vec!["true".to_owned()];
    if let Some(since) = &q.since {
        filters.push(format!(
            "{start} >= to_timestamp_millis({})",
            time("since", since)?
        ));
    }
    if let Some(until) = &q.until {
        filters.push(format!(
            "{start} < to_timestamp_millis({})",
            time("until", until)?
        ));
    }
    if let Some(keys) = &q.key {
        for pair in keys.split(',').filter(|p| !p.is_empty()) {
            let Some((column, value)) = pair.split_once(':') else {
                return Err(AppError::bad_request(format!(
                    "key '{pair}': give column:value, e.g. channel:online"
                )));
            };
            if view.schema.column_with_name(column).is_none() {
                return Err(AppError::bad_request(format!(
                    "key column '{column}' is not a column of {name}"
                )));
            }
            filters.push(format!(
                "CAST({} AS VARCHAR) = {}",
                quote(column),
                literal(value)
            ));
        }
    }
    match q.is_final {
        Some(true) => filters.push("is_final".into()),
        Some(false) => filters.push("NOT is_final".into()),
        None => {}
    }
    let wanted = q.format.unwrap_or_default();
    // The question, as the cache knows it: its filters and its shape.
    let filter = filters.join(" AND ");
    let key = format!("{name}\n{filter}\n{limit}\n{wanted:?}");
    let version = {
        let progress = state.inner.sources.progress.borrow();
        Version {
            tick: progress.tick,
            epoch: progress.epoch,
        }
    };
    let compute = || async {
        // Written on the query runtime against the catalog it runs on.
        let (committed_name, table) = (format!("views.{name}"), quote(&name));
        let (columns, start, filter) = (columns.clone(), start.clone(), filter.clone());
        let sql = move |catalog: &Catalog| {
            let committed = catalog.tables().contains(&committed_name);
            let source = if committed {
                format!(
                    "SELECT {columns}, true AS is_final FROM views.{table} \
                     UNION ALL SELECT {columns}, is_final FROM live.{table} \
                     WHERE {start} > (SELECT coalesce(max({start}), to_timestamp_millis(0)) FROM views.{table})"
                )
            } else {
                format!("SELECT {columns}, is_final FROM live.{table}")
            };
            format!("SELECT * FROM ({source}) WHERE {filter} ORDER BY {start} DESC")
        };
        let answer = state.inner.sql.run_with(sql, limit).await?;
        format::encode(
            wanted,
            &answer.schema,
            &answer.batches,
            answer.truncated,
            answer.elapsed.as_millis() as u64,
        )
    };
    let (answer, source) = state
        .inner
        .answers
        .get_or_compute(version, key, compute)
        .await?;
    let mut response = answer.respond(&headers);
    response.headers_mut().insert(
        HeaderName::from_static("x-kpiflow-cache"),
        HeaderValue::from_static(source.as_str()),
    );
    Ok(response)
}

/// Server-Sent Events of the view's live rows (the windows of the last
/// hour): `snapshot`, then `update` at the engine's tick, with `id` for
/// `Last-Event-ID`.
#[utoipa::path(get, path = "/api/views/{name}/stream", tag = "views",
    params(("name" = String, Path, description = "The view")),
    responses((status = OK, content_type = "text/event-stream", description = "snapshot, then updates"),
              (status = NOT_FOUND, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    find(&state, &name)?;
    let feed = state
        .inner
        .feeds
        .get(&format!("view:{name}"))
        .ok_or_else(|| AppError::bad_request(format!("view '{name}' has no windows to stream")))?;
    Ok(sse::stream(&state, feed, &headers))
}
