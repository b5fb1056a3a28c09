//! How a database file's connection is opened: flags, the busy timeout, and the PRAGMAs that make
//! every commit durable (WAL, `synchronous = FULL`; a staging file being bootstrapped in private
//! keeps its rollback journal in memory and syncs only when finished).

use std::path::Path;
use std::time::Duration;

use outpost_api::Result;
use rusqlite::Connection;

use crate::error::SqlResultExt;

/// How long a writer waits for another process's writer of the same file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How durable a file's commits are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// A live database: `synchronous = FULL`, so a committed write survives a crash or power loss.
    Full,
    /// A file built in private under a staging name that nobody opens until it is finished (a
    /// bootstrap, `staging::Bootstrap`): commits are not synced (`synchronous = OFF`), and its
    /// rollback journal is kept in memory (`journal_mode = MEMORY`: a write that fails still rolls
    /// back, and each page is written once, into the file, instead of into a WAL and then the
    /// file). A crash loses the file, which is thrown away and built again; it is switched to WAL
    /// and made durable (synced with `synchronous = FULL`) before it is moved into place.
    Staging,
}

/// Open the connection of the database file at `path` (creating the file only when `create`), its
/// commits as durable as `durability` says.
pub(crate) fn open_connection_with(path: &Path, create: bool, durability: Durability) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).sql()?;
    conn.busy_timeout(BUSY_TIMEOUT).sql()?;
    if create {
        // A new file returns the space compaction frees (`PRAGMA incremental_vacuum`). SQLite takes
        // this only before the first table, and before the switch to WAL; a file made earlier needs
        // `VACUUM` once (`outpost db compact --vacuum`). On an existing file it changes nothing.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").sql()?;
    }
    // WAL: readers never block the writer; FULL: a committed write survives a crash or power loss.
    // A staging file has no other reader than its builder's own, one call at a time.
    match durability {
        Durability::Full => conn.pragma_update(None, "journal_mode", "WAL").sql()?,
        Durability::Staging => conn.pragma_update(None, "journal_mode", "MEMORY").sql()?,
    }
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Staging => "OFF",
    };
    conn.pragma_update(None, "synchronous", synchronous).sql()?;
    // Checkpoints run in the background (checkpoint.rs); the writer's own is only a backstop.
    conn.pragma_update(None, "wal_autocheckpoint", crate::checkpoint::BACKSTOP_PAGES).sql()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
