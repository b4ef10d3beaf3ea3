//! Roles and tokens. Viewer < analyst < planner < admin: each route needs a
//! role, and a token's role opens every route at or below it. A token comes
//! as `Authorization: Bearer <token>` or in the cookie the login page sets.
//! With no tokens configured auth is off and every route is open (`demo`
//! on 127.0.0.1). Tokens are compared in constant time and never logged.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::AppError;

/// The cookie the login page sets.
pub const COOKIE_NAME: &str = "kpiflow_token";

/// What a token may do; each role includes those below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Dashboards and the views API.
    Viewer,
    /// + the SQL API and page.
    Analyst,
    /// + alert rules.
    Planner,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Planner, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One configured token.
#[derive(Clone, Deserialize, Serialize)]
pub struct Token {
    /// Who holds it (shown in logs instead of the token).
    pub name: String,
    pub role: Role,
    pub token: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The configured tokens; none: auth off.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Arc<[Token]>,
}

/// Who a request is, once its token checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Auth {
    pub fn new(tokens: Vec<Token>) -> Auth {
        Auth {
            tokens: tokens.into(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token's holder, comparing against every configured token in
    /// constant time (no early exit on the first match either).
    pub fn check(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for t in self.tokens.iter() {
            if same(t.token.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some(Caller {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found
    }

    /// The caller of a request, from its bearer token or login cookie.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        presented(headers).and_then(|t| self.check(&t))
    }
}

/// Equal bytes, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries: the bearer token, else the login cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// The role a route group needs, for [`require`].
#[derive(Clone)]
pub struct Needs {
    pub auth: Auth,
    pub role: Role,
}

/// Middleware: 401 without a valid token, 403 below the role. A browser
/// asking for a page is sent to the login page instead of a 401.
pub async fn require(State(needs): State<Needs>, mut request: Request, next: Next) -> Response {
    if !needs.auth.enabled() {
        return next.run(request).await;
    }
    match needs.auth.caller(request.headers()) {
        None if wants_html(request.headers()) => {
            let next_path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            Redirect::to(&format!("/login?next={}", encode(&next_path))).into_response()
        }
        None => AppError::Unauthorized.into_response(),
        Some(caller) if caller.role < needs.role => AppError::Forbidden {
            needed: needs.role,
            has: caller.role,
        }
        .into_response(),
        Some(caller) => {
            tracing::Span::current().record("caller", caller.name.as_str());
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Percent-encodes a path for a query parameter.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Where to go after logging in: only a path on this server.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// The login response: the cookie and a redirect, or back to the form.
pub fn login_response(auth: &Auth, token: &str, next: Option<&str>) -> Response {
    let next = safe_next(next);
    match auth.check(token.trim()) {
        Some(caller) => {
            tracing::info!(caller = %caller.name, role = %caller.role, "logged in");
            let cookie = format!(
                "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
                token.trim()
            );
            let mut response = Redirect::to(next).into_response();
            if let Ok(value) = cookie.parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::SET_COOKIE, value);
            }
            response
        }
        None => {
            tracing::warn!("a login with an unknown token");
            let mut response =
                Redirect::to(&format!("/login?error=1&next={}", encode(next))).into_response();
            *response.status_mut() = StatusCode::SEE_OTHER;
            response
        }
    }
}

/// Clears the login cookie.
pub fn logout_response() -> Response {
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) =
        format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0").parse()
    {
        response
            .headers_mut()
            .insert(axum::http::header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_roles_are_ordered() {
        let auth = Auth::new(vec![
            Token {
                name: "wall".into(),
                role: Role::Viewer,
                token: "v-secret".into(),
            },
            Token {
                name: "ana".into(),
                role: Role::Analyst,
                token: "a-secret".into(),
            },
        ]);
        assert_eq!(auth.check("a-secret").unwrap().role, Role::Analyst);
        assert!(auth.check("a-secre").is_none());
        assert!(auth.check("a-secret ").is_none());
        assert!(auth.check("").is_none());
        assert!(Role::Viewer < Role::Analyst && Role::Planner < Role::Admin);
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; kpiflow_token=abc; b=2".parse().unwrap());
        assert_eq!(presented(&headers).as_deref(), Some("abc"));
        headers.insert(AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(presented(&headers).as_deref(), Some("xyz"));
        headers.insert(AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(presented(&headers), None);
    }

    #[test]
    fn after_login_only_local_paths() {
        assert_eq!(safe_next(Some("/dashboards/sales")), "/dashboards/sales");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
