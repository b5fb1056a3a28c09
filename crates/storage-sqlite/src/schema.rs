//! The file format: versioned schema migrations (`PRAGMA user_version`) and per-table SQL views.
//!
//! Internal tables start with `_` so they never collide with a view of a user table (user table names
//! cannot start with `_`).

use outpost_api::{names, Error, Result};
use rusqlite::Connection;

use crate::error::SqlResultExt;

/// The newest file format this build reads and writes.
pub const FORMAT_VERSION: i64 = 2;

const MIGRATIONS: &[&str] = &[
    // 1: the first format.
    "CREATE TABLE _meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
     CREATE TABLE _epochs (position INTEGER PRIMARY KEY, uuid BLOB NOT NULL UNIQUE, start_seq INTEGER NOT NULL);
     CREATE TABLE _revisions (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT, deleted INTEGER NOT NULL,
        body TEXT, seq INTEGER, chain BLOB);
     CREATE UNIQUE INDEX _revisions_key ON _revisions (tbl, id, rev);
     CREATE UNIQUE INDEX _revisions_seq ON _revisions (seq) WHERE seq IS NOT NULL;
     CREATE TABLE _records (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, deleted INTEGER NOT NULL, body TEXT NOT NULL,
        leaves TEXT NOT NULL, conflicts TEXT NOT NULL, field_conflicts TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (tbl, id));
     CREATE UNIQUE INDEX _records_seq ON _records (seq);
     CREATE TABLE _knowledge (
        peer BLOB NOT NULL, peer_seq INTEGER NOT NULL, peer_chain BLOB NOT NULL, local_seq INTEGER NOT NULL,
        via BLOB, PRIMARY KEY (peer, peer_seq));
     CREATE INDEX _knowledge_local_seq ON _knowledge (local_seq);
     CREATE TABLE _resume (source BLOB PRIMARY KEY, source_seq INTEGER NOT NULL, source_chain BLOB NOT NULL);",
    // 2: the live-record count kept with every write (`_meta` key `record_count`), so `info` does not
    // scan the records; the engine counts on first open.
    "",
];

/// Bring a file to [`FORMAT_VERSION`]; fails clearly on a file of a newer format.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).sql()?;
    if version > FORMAT_VERSION {
        return Err(Error::invalid(format!(
            "this database file has format version {version}, newer than this outpost reads ({FORMAT_VERSION}); \
             upgrade outpost to open it"
        )));
    }
    let tx = conn.transaction().sql()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).sql()?;
        tx.pragma_update(None, "user_version", i as i64 + 1).sql()?;
    }
    tx.commit().sql()
}

/// The format version of an open file.
pub fn version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).sql()
}

/// Create the SQL views of a user table: `<table>` (reconciled, live records) and `<table>_history`
/// (every stored revision). The name is validated before it reaches SQL text. A history view whose
/// name is taken by another table's view is skipped.
pub fn ensure_views(conn: &Connection, table: &str) -> Result<()> {
    names::validate_table_name(table)?;
    conn.execute_batch(&format!(
        "CREATE VIEW IF NOT EXISTS \"{table}\" AS
           SELECT id, rev, body AS attributes, seq FROM _records WHERE tbl = '{table}' AND deleted = 0;
         CREATE VIEW IF NOT EXISTS \"{table}_history\" AS
           SELECT id, rev, parent, deleted, body AS attributes, seq FROM _revisions WHERE tbl = '{table}';"
    ))
    .sql()
}
