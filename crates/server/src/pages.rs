//! The pages and their assets, built into the binary (no CDN, no build
//! step): the dashboards' index, a dashboard, the SQL page, the login page,
//! and `/assets/*` (our script and style, uPlot vendored with its licence).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::auth;
use crate::error::{AppError, ErrorBody, Result};
use crate::state::AppState;

macro_rules! asset {
    ($path:literal, $type:literal) => {
        (
            $path,
            $type,
            include_bytes!(concat!("../assets/", $path)).as_slice(),
        )
    };
}

/// `/assets/<path>`: content type and bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    asset!("kpiflow.css", "text/css; charset=utf-8"),
    asset!("kpiflow.js", "text/javascript; charset=utf-8"),
    asset!("dashboard.js", "text/javascript; charset=utf-8"),
    asset!("sql.js", "text/javascript; charset=utf-8"),
    asset!("login.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!(
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

const INDEX: &str = include_str!("../assets/index.html");
const DASHBOARD: &str = include_str!("../assets/dashboard.html");
const SQL: &str = include_str!("../assets/sql.html");
const LOGIN: &str = include_str!("../assets/login.html");

/// The list of dashboards.
#[utoipa::path(get, path = "/", tag = "pages", responses((status = OK, content_type = "text/html", body = String)))]
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// One dashboard, live.
#[utoipa::path(get, path = "/dashboards/{name}", tag = "pages",
    params(("name" = String, Path, description = "The dashboard")),
    responses((status = OK, content_type = "text/html", body = String), (status = NOT_FOUND, body = ErrorBody)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<&'static str>> {
    crate::api::dashboards::find(&state, &name)?;
    Ok(Html(DASHBOARD))
}

/// The analysts' SQL page.
#[utoipa::path(get, path = "/sql", tag = "pages", responses((status = OK, content_type = "text/html", body = String)))]
pub async fn sql() -> Html<&'static str> {
    Html(SQL)
}

/// The login form (open to all).
#[utoipa::path(get, path = "/login", tag = "pages",
    params(("next" = Option<String>, Query, description = "Where to go after logging in"),
           ("error" = Option<String>, Query, description = "Set after a refused token")),
    responses((status = OK, content_type = "text/html", body = String)))]
pub async fn login_page() -> Html<&'static str> {
    Html(LOGIN)
}

/// The login form's fields.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    pub token: String,
    pub next: Option<String>,
}

/// Checks the token; sets the login cookie and redirects to `next`, or
/// back to the form.
#[utoipa::path(post, path = "/login", tag = "pages",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = SEE_OTHER, description = "to next, with the cookie; or back to the form")))]
pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    auth::login_response(state.auth(), &form.token, form.next.as_deref())
}

/// Clears the login cookie.
#[utoipa::path(post, path = "/logout", tag = "pages",
    responses((status = SEE_OTHER, description = "to the login page")))]
pub async fn logout() -> Response {
    auth::logout_response()
}

/// Our script and style.
#[utoipa::path(get, path = "/assets/{file}", tag = "pages",
    params(("file" = String, Path, description = "e.g. kpiflow.css")),
    responses((status = OK, description = "the file"), (status = NOT_FOUND, body = ErrorBody)))]
pub async fn asset(Path(file): Path<String>) -> Result<Response> {
    serve_asset(&file)
}

/// uPlot, vendored from npm with its licence.
#[utoipa::path(get, path = "/assets/vendor/uplot/{file}", tag = "pages",
    params(("file" = String, Path, description = "uPlot.iife.min.js, uPlot.min.css or LICENSE")),
    responses((status = OK, description = "the file"), (status = NOT_FOUND, body = ErrorBody)))]
pub async fn vendor_asset(Path(file): Path<String>) -> Result<Response> {
    serve_asset(&format!("vendor/uplot/{file}"))
}

fn serve_asset(path: &str) -> Result<Response> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .ok_or_else(|| AppError::NotFound(format!("no asset '{path}'")))?;
    Ok((
        [
            (CONTENT_TYPE, *content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        *bytes,
    )
        .into_response())
}
