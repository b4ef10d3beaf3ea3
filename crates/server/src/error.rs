//! One error type for every handler: a status, a stable code and a message
//! that says what to fix, as JSON `{"error": {"code", "message",
//! "position"?}}`. Internal errors are logged with their cause and a
//! reference; the response carries only the reference.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Role;

/// Where in a SQL text an error is (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong (a parameter, the SQL); fix it and retry.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        position: Option<Position>,
    },
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// No valid token: send `Authorization: Bearer <token>` or log in.
    #[error("a valid token is needed: send 'Authorization: Bearer <token>' or log in at /login")]
    Unauthorized,
    /// A valid token whose role is below the route's.
    #[error("this needs the {needed} role; the token has {has}")]
    Forbidden { needed: Role, has: Role },
    /// A query ran longer than the limit and was cancelled.
    #[error(
        "the query ran longer than {seconds} s and was cancelled; narrow it (a time range, a LIMIT) or raise [server] sql_timeout"
    )]
    Timeout { seconds: u64 },
    /// A query needed more memory than the SQL API may use.
    #[error(
        "the query needs more memory than the SQL API may use ({limit_mib} MiB): narrow it or raise [server] sql_memory_limit ({detail})"
    )]
    MemoryLimit { limit_mib: u64, detail: String },
    /// Not there yet (no view rows committed, the pipeline not ready).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an outside failure: logged with its cause, shown as a reference.
    #[error("internal error (reference {reference}); the server log has the cause")]
    Internal { reference: String },
}

/// The JSON body of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `bad_request`, `sql_invalid`, `sql_refused`, `not_found`,
    /// `unauthorized`, `forbidden`, `timeout`, `memory_limit`,
    /// `unavailable`, `internal`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            code: "bad_request",
            message: message.into(),
            position: None,
        }
    }

    /// Logs `cause` with a fresh reference and returns the error to show.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> AppError {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let reference = format!(
            "{:x}-{}",
            chrono::Utc::now().timestamp_millis(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        tracing::error!(%reference, error = %cause, "{context}");
        AppError::Internal { reference }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::Timeout { .. } => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            AppError::MemoryLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let position = match &self {
            AppError::BadRequest { position, .. } => *position,
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                position,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;
