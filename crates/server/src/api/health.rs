//! `/healthz` (the process serves), `/readyz` (the pipeline holds Kafka
//! partitions and, with checkpoints, saved one within three intervals) and
//! `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Always 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = OK, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness and why not.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    /// Kafka partitions this process holds.
    pub partitions: usize,
    /// Seconds since this process's last checkpoint, if it took one.
    pub since_checkpoint_s: Option<f64>,
    /// What is missing, when not ready.
    pub problems: Vec<String>,
}

/// 200 when ready, 503 with the reasons otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = OK, body = Ready), (status = SERVICE_UNAVAILABLE, body = Ready)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = (state.inner.sources.ready)();
    let progress = state.inner.sources.progress.borrow().clone();
    let now = chrono::Utc::now().timestamp_millis();
    let mut problems = Vec::new();
    if readiness.partitions == 0 {
        problems.push("no Kafka partitions assigned yet".to_owned());
    }
    let since = progress.checkpoint_at_ms.map(|t| (now - t) as f64 / 1000.0);
    if let Some(every) = state.inner.config.checkpoint_interval {
        let limit = 3.0 * every.as_secs_f64();
        // Before the first checkpoint, the process's age stands in.
        let age = since.unwrap_or_else(|| state.inner.started.elapsed().as_secs_f64());
        if age > limit {
            problems.push(format!(
                "no checkpoint for {age:.0} s (the interval is {:.0} s)",
                every.as_secs_f64()
            ));
        }
    }
    let ready = problems.is_empty();
    let body = Json(Ready {
        ready,
        partitions: readiness.partitions,
        since_checkpoint_s: since,
        problems,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Every metric of the process (ingest, engine, storage, HTTP) in
/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = OK, content_type = "text/plain", body = String)))]
pub async fn metrics() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    )
        .into_response()
}
