//! CouchDB's error answers: a status and `{"error": "...", "reason": "..."}`, which PouchDB reads by
//! `error` (and by status: 401/403 stop a replication, 404 on a database makes it try to create one,
//! 409 is a conflict, 5xx are retried). Every Outpost error kind maps to one of them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_api::{Error, ErrorKind};
use serde_json::json;

/// An error as a CouchDB client expects it.
#[derive(Debug, Clone)]
pub struct CouchError {
    /// The HTTP status.
    pub status: StatusCode,
    /// CouchDB's error name (`not_found`, `conflict`, `forbidden`, `bad_request`, …).
    pub error: &'static str,
    /// Why, for people.
    pub reason: String,
}

/// A handler's result.
pub type CouchResult<T> = Result<T, CouchError>;

impl CouchError {
    /// An error of this status and name.
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Self {
        CouchError { status, error, reason: reason.into() }
    }

    /// 400 `bad_request`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        CouchError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 404 `not_found` (CouchDB's reasons are `missing`, `deleted`, `Database does not exist.`).
    pub fn not_found(reason: impl Into<String>) -> Self {
        CouchError::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    /// 403 `forbidden`: what a replicating PouchDB counts as a denied document and goes on.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        CouchError::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    /// 409 `conflict`, with CouchDB's own reason.
    pub fn conflict() -> Self {
        CouchError::new(StatusCode::CONFLICT, "conflict", "Document update conflict.")
    }

    /// Whether the error is the request's own fault, so that repeating it cannot help (as opposed to
    /// the server being unavailable or failing).
    pub fn is_permanent(&self) -> bool {
        self.status.is_client_error()
    }
}

impl From<Error> for CouchError {
    fn from(e: Error) -> Self {
        let (status, error) = match e.kind {
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "bad_request"),
            ErrorKind::AlreadyExists => (StatusCode::PRECONDITION_FAILED, "file_exists"),
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            // A corrupt body or id from the client: its request, refused.
            ErrorKind::Corrupt => (StatusCode::BAD_REQUEST, "bad_request"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error"),
        };
        // The detail of a server failure stays in the server's log.
        let reason = if status.is_server_error() {
            tracing::warn!(error = %e, "a CouchDB-protocol request failed");
            "the server could not complete the request; it has been logged".to_owned()
        } else {
            e.message
        };
        CouchError { status, error, reason }
    }
}

impl IntoResponse for CouchError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error, "reason": self.reason}))).into_response()
    }
}
