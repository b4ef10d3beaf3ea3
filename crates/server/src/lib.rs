//! The live KPI service: the only crate that knows HTTP.
//!
//! `app(state)` is the whole service as an axum `Router` (tests drive it
//! with `oneshot`, no socket); `serve` runs it on a listener until shutdown,
//! ending open event streams first.
//!
//! - `pages` and `assets/`: the dashboards, the SQL page and the login page,
//!   built into the binary.
//! - `api/`: dashboards and their event stream, views (history joined with
//!   live rows, SSE), the analysts' SQL, health and metrics.
//! - `dashboards/`: dashboard files, each panel's data, the per-tick feed.
//! - `sse`: snapshot-then-updates streams with bounded buffers.
//! - `answers`: the views API's answers, kept until the next tick.
//! - `auth`: roles and tokens; `error`: the one `AppError`; `metrics`: the
//!   recorder and the request span; `sql`: the read-only catalog with its
//!   limits; `format` and `json`: rows out as JSON, CSV or Arrow IPC.
//!
//! Routes and the role each needs (with auth on; off, all are open):
//! open to all: `/healthz`, `/readyz`, `/login`, `/logout`, `/assets/*`
//! (the login page needs its style); viewer: the pages, `/api/dashboards*`,
//! `/api/views*`, `/api/openapi.json`, `/metrics`; analyst: `/sql`,
//! `/api/sql`.

mod answers;
mod api;
mod auth;
mod dashboards;
mod error;
mod format;
mod json;
pub mod metrics;
mod pages;
mod sql;
mod sse;
mod state;

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Role, Token};
pub use dashboards::{BUILT_IN as BUILT_IN_DASHBOARDS, Dashboard};
pub use error::AppError;
pub use sql::SqlService;
pub use state::{AppState, Readiness, ReadyCheck, ServerConfig, Sources};

use auth::Needs;

/// The routes each role opens, with their OpenAPI description.
fn routes() -> [(Option<Role>, OpenApiRouter<AppState>); 3] {
    let open = OpenApiRouter::new()
        .routes(routes!(api::health::healthz))
        .routes(routes!(api::health::readyz))
        .routes(routes!(pages::login_page, pages::login))
        .routes(routes!(pages::logout))
        .routes(routes!(pages::asset))
        .routes(routes!(pages::vendor_asset));
    let viewer = OpenApiRouter::new()
        .routes(routes!(pages::index))
        .routes(routes!(pages::dashboard))
        .routes(routes!(api::dashboards::list))
        .routes(routes!(api::dashboards::get))
        .routes(routes!(api::dashboards::stream))
        .routes(routes!(api::views::list))
        .routes(routes!(api::views::rows))
        .routes(routes!(api::views::stream))
        .routes(routes!(api::health::metrics))
        .routes(routes!(openapi_json));
    let analyst = OpenApiRouter::new()
        .routes(routes!(pages::sql))
        .routes(routes!(api::sql::run));
    [
        (None, open),
        (Some(Role::Viewer), viewer),
        (Some(Role::Analyst), analyst),
    ]
}

/// The OpenAPI document of every route.
pub fn openapi() -> OpenApi {
    let mut all = OpenApiRouter::<AppState>::new();
    for (_, group) in routes() {
        all = all.merge(group);
    }
    let mut api = all.into_openapi();
    api.info.title = "kpiflow".into();
    api.info.description =
        Some("Live manufacturing KPIs: dashboards, views, SQL. See README.".into());
    api
}

/// This document: every route of the service.
#[utoipa::path(get, path = "/api/openapi.json", tag = "health",
    responses((status = OK, description = "OpenAPI 3.1", content_type = "application/json")))]
async fn openapi_json() -> Json<OpenApi> {
    Json(openapi())
}

/// The whole service.
pub fn app(state: AppState) -> Router {
    metrics::install();
    let auth = state.auth().clone();
    let mut router = OpenApiRouter::<AppState>::new();
    for (role, group) in routes() {
        let group = match role {
            Some(role) => group.route_layer(from_fn_with_state(
                Needs {
                    auth: auth.clone(),
                    role,
                },
                auth::require,
            )),
            None => group,
        };
        router = router.merge(group);
    }
    let (router, _) = router.split_for_parts();
    router
        // A route layer sees the matched route, for the span and metrics.
        .route_layer(from_fn(metrics::observe))
        .fallback(|| async { AppError::NotFound("no such route; see /api/openapi.json".into()) })
        .with_state(state)
        // Compression skips event streams (tower-http's default predicate),
        // which must reach the client as each event is written.
        .layer(CompressionLayer::new())
}

/// Serves `app(state)` on `listener` until `shutdown`; open event streams
/// end first, so the graceful shutdown does not wait on them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let feeds_task = state.spawn_feeds(shutdown.clone());
    let streams = state.inner.shutdown.clone();
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            streams.cancel();
        })
        .await;
    feeds_task.abort();
    result
}
