//! Mapping SQLite failures onto the api's error kinds.

use outpost_api::{Error, ErrorKind};
use rusqlite::ErrorCode;

/// Convert a rusqlite error: busy/locked → Unavailable (retry), corrupt/not-a-database → Corrupt, a full
/// disk → Unavailable, anything else → Internal.
pub fn map(e: rusqlite::Error) -> Error {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Unavailable,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => ErrorKind::Corrupt,
            ErrorCode::DiskFull | ErrorCode::CannotOpen => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("sqlite: {e}"))
}

/// `?`-friendly conversion.
pub trait SqlResultExt<T> {
    /// Map the error with [`map`].
    fn sql(self) -> Result<T, Error>;
}

impl<T> SqlResultExt<T> for Result<T, rusqlite::Error> {
    fn sql(self) -> Result<T, Error> {
        self.map_err(map)
    }
}
