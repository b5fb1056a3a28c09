//! The public error type: one set of stable kinds shared by every backend and transport.

use serde::{Deserialize, Serialize};

use crate::RevId;

/// The stable kind of an [`Error`]. Each kind maps to exactly one HTTP status and back, so a remote peer
/// reports the same kind as a local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The database, table, record or revision does not exist.
    NotFound,
    /// A write named a revision that is not a current leaf (or none while the record exists).
    Conflict,
    /// The input failed validation; the message names what and where.
    InvalidInput,
    /// A database or table of that name already exists.
    AlreadyExists,
    /// The input exceeds a configured limit.
    TooLarge,
    /// No valid credentials were presented.
    Unauthorized,
    /// The credentials do not allow this operation.
    Forbidden,
    /// The service is temporarily unable to answer; retrying may succeed.
    Unavailable,
    /// Stored or received data failed an integrity check (hash or chain mismatch).
    Corrupt,
    /// An unexpected failure inside the service.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::InvalidInput,
        ErrorKind::AlreadyExists,
        ErrorKind::TooLarge,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::Unavailable,
        ErrorKind::Corrupt,
        ErrorKind::Internal,
    ];

    /// The stable wire name (`not_found`, `conflict`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status code of this kind (one status per kind).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::AlreadyExists => 412,
            ErrorKind::TooLarge => 413,
            ErrorKind::Corrupt => 422,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The kind of an HTTP status; unknown 4xx become `InvalidInput`, other unknown codes `Internal`,
    /// and 502/504 (gateways) `Unavailable`.
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            502 | 504 => ErrorKind::Unavailable,
            s => ErrorKind::ALL.into_iter().find(|k| k.http_status() == s).unwrap_or(if (400..500).contains(&s) {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::Internal
            }),
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Outpost error: a stable [`ErrorKind`], a human-readable message, and for conflicts the current
/// winning revision. Serialises as the HTTP error body `{"error": kind, "message": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct Error {
    /// What went wrong, in a stable form.
    #[serde(rename = "error")]
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// For `Conflict` on a record: the record's current winning revision, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_rev: Option<RevId>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), current_rev: None }
    }
    /// A `NotFound` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// An `InvalidInput` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// A `Conflict` error carrying the current winning revision.
    pub fn conflict(message: impl Into<String>, current_rev: Option<RevId>) -> Self {
        Error { kind: ErrorKind::Conflict, message: message.into(), current_rev }
    }
    /// An `AlreadyExists` error.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// A `TooLarge` error.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }
    /// A `Corrupt` error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    /// An `Internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// An `Unauthorized` error: no credentials, or credentials the server does not know.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// A `Forbidden` error: known credentials that do not allow the call.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// An `Unavailable` error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Prefix the message with context, keeping the kind.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// The result type of every Outpost API call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_http_status() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_http_status(kind.http_status()), kind, "{kind}");
        }
        let statuses: std::collections::HashSet<u16> = ErrorKind::ALL.iter().map(|k| k.http_status()).collect();
        assert_eq!(statuses.len(), ErrorKind::ALL.len(), "statuses are distinct");
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let e = Error::conflict("stale", Some("1-00000000000000000000000000000000".parse().unwrap()));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["error"], "conflict");
        assert_eq!(json["message"], "stale");
        assert_eq!(json["current_rev"], "1-00000000000000000000000000000000");
        let back: Error = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }
}
