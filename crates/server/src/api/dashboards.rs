//! `GET /api/dashboards`, `GET /api/dashboards/{name}` and the page's one
//! event stream, `GET /api/dashboards/{name}/stream`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::dashboards::Dashboard;
use crate::error::{AppError, ErrorBody, Result};
use crate::sse;
use crate::state::AppState;

/// A dashboard in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardSummary {
    pub name: String,
    pub title: String,
    pub description: String,
}

/// The dashboards, in file order.
#[utoipa::path(get, path = "/api/dashboards", tag = "dashboards",
    responses((status = OK, body = Vec<DashboardSummary>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<DashboardSummary>> {
    Json(
        state
            .dashboards()
            .iter()
            .map(|d| DashboardSummary {
                name: d.name.clone(),
                title: d.title.clone(),
                description: d.description.clone(),
            })
            .collect(),
    )
}

/// One dashboard's definition: its panels.
#[utoipa::path(get, path = "/api/dashboards/{name}", tag = "dashboards",
    params(("name" = String, Path, description = "The dashboard, e.g. sales")),
    responses((status = OK, body = Dashboard), (status = NOT_FOUND, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Dashboard>> {
    find(&state, &name).map(|d| Json(d.clone()))
}

pub(crate) fn find<'a>(state: &'a AppState, name: &str) -> Result<&'a Dashboard> {
    state
        .dashboards()
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = state.dashboards().iter().map(|d| d.name.as_str()).collect();
            AppError::NotFound(format!(
                "no dashboard '{name}'; there are {}",
                names.join(", ")
            ))
        })
}

/// Server-Sent Events carrying every panel of the page: `snapshot` first
/// (all panels), then `update` (the panels that changed) at the engine's
/// tick; `id` is the frame's sequence number, so a reconnect with
/// `Last-Event-ID` resumes without a gap.
#[utoipa::path(get, path = "/api/dashboards/{name}/stream", tag = "dashboards",
    params(("name" = String, Path, description = "The dashboard")),
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
        .get(&name)
        .ok_or_else(|| AppError::NotFound(format!("no feed for dashboard '{name}'")))?;
    Ok(sse::stream(&state, feed, &headers))
}
