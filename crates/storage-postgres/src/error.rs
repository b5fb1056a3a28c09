//! Mapping PostgreSQL failures (SQLSTATEs, connection and pool errors) onto the api's error kinds.

use deadpool_postgres::PoolError;
use outpost_api::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

/// The kind of a SQLSTATE: connection trouble, lock and serialisation failures, cancellation and
/// resource exhaustion → Unavailable (retrying may succeed), and so is a missing PostgreSQL database (the
/// server's configuration, not a client's request, names it); a dropped schema → NotFound; corruption →
/// Corrupt; bad credentials → Unauthorized; anything else → Internal.
pub fn kind_of(code: &SqlState) -> ErrorKind {
    let class = &code.code()[..2];
    match class {
        "08" | "53" | "57" | "40" => ErrorKind::Unavailable,
        "28" => ErrorKind::Unauthorized,
        "XX" if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED => ErrorKind::Corrupt,
        _ if *code == SqlState::LOCK_NOT_AVAILABLE => ErrorKind::Unavailable,
        _ if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME => ErrorKind::NotFound,
        _ if *code == SqlState::INVALID_CATALOG_NAME => ErrorKind::Unavailable,
        // Text PostgreSQL cannot hold (a NUL character): bad input, whatever path let it through.
        _ if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *code == SqlState::UNTRANSLATABLE_CHARACTER => {
            ErrorKind::InvalidInput
        }
        _ => ErrorKind::Internal,
    }
}

/// Convert a tokio-postgres error; `target` (the URL without password) names the server in
/// connection errors.
pub fn map(e: tokio_postgres::Error, target: &str) -> Error {
    if let Some(db) = e.as_db_error() {
        let kind = kind_of(db.code());
        let mut message = format!("postgres: {}", db.message());
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        if matches!(kind, ErrorKind::Unavailable | ErrorKind::Unauthorized)
            || db.code() == &SqlState::INVALID_CATALOG_NAME
        {
            message.push_str(&format!(" [{target}]"));
        }
        return Error::new(kind, message);
    }
    // No SQLSTATE: the connection failed or closed (refused, reset, timed out).
    let source = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
    Error::unavailable(format!("postgres at {target} is unavailable: {e}{source}"))
}

/// Convert a pool error (a connection that could not be made or waited for).
pub fn map_pool(e: PoolError, target: &str) -> Error {
    match e {
        PoolError::Backend(e) => map(e, target),
        PoolError::Timeout(_) => {
            Error::unavailable(format!("postgres at {target}: timed out waiting for a pooled connection"))
        }
        other => Error::unavailable(format!("postgres at {target}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_onto_kinds() {
        let cases = [
            (SqlState::CONNECTION_FAILURE, ErrorKind::Unavailable),
            (SqlState::TOO_MANY_CONNECTIONS, ErrorKind::Unavailable),
            (SqlState::T_R_SERIALIZATION_FAILURE, ErrorKind::Unavailable),
            (SqlState::T_R_DEADLOCK_DETECTED, ErrorKind::Unavailable),
            (SqlState::LOCK_NOT_AVAILABLE, ErrorKind::Unavailable),
            (SqlState::QUERY_CANCELED, ErrorKind::Unavailable),
            (SqlState::ADMIN_SHUTDOWN, ErrorKind::Unavailable),
            (SqlState::INVALID_PASSWORD, ErrorKind::Unauthorized),
            (SqlState::DATA_CORRUPTED, ErrorKind::Corrupt),
            (SqlState::UNDEFINED_TABLE, ErrorKind::NotFound),
            (SqlState::INVALID_CATALOG_NAME, ErrorKind::Unavailable),
            (SqlState::CHARACTER_NOT_IN_REPERTOIRE, ErrorKind::InvalidInput),
            (SqlState::UNIQUE_VIOLATION, ErrorKind::Internal),
            (SqlState::SYNTAX_ERROR, ErrorKind::Internal),
        ];
        for (code, kind) in cases {
            assert_eq!(kind_of(&code), kind, "{}", code.code());
        }
    }
}
