//! The file format: versioned schema migrations (`PRAGMA user_version`) and per-table SQL views.
//!
//! Internal tables start with `_` so they never collide with a view of a user table (user table names
//! cannot start with `_`). Format 4's tables:
//!
//! - `_events`: one row per revision event, keyed by its seq (the rowid: appended in order, no seq
//!   index of its own), with the revision's body, the only copy of it, and (format 4) a foreign
//!   revision's digest (SPEC §3); `_events_key` finds a revision by (table, id, rev).
//! - `_stubs`: revisions known only by id (ancestors from a peer's ancestry), apart from the events;
//!   a revision is in one of the two, and leaves `_stubs` when its event arrives.
//! - `_records`: the reconciled state of each record, keyed by (table, id) without a rowid, a live
//!   record's `body` NULL when it is the winner's own (read from the winner's event; a deleted one
//!   keeps its `{}`); `_records_seq` orders the changes feed.
//! - `_meta` (head, chain, live-record count), `_epochs`, `_knowledge`, `_resume`.
//! - `_superseded` (format 4): events whose revision's body a later event replaced (SPEC §3), keyed
//!   by seq, without their bodies: the history's fold to the chain hash needs them.
//! - `_local` (format 4): the local documents of CouchDB-protocol peers (SPEC §17), by (table, id).

use outpost_api::{names, Error, Result};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::SqlResultExt;

/// The newest file format this build reads and writes.
pub const FORMAT_VERSION: i64 = 4;

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
    // 3: each body stored once, events keyed by seq, stubs apart (see the module's doc). The views
    // read the old tables: they are dropped before and made again after (`migrate`).
    "CREATE TABLE _events (
        seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT,
        deleted INTEGER NOT NULL, body TEXT, chain BLOB NOT NULL);
     INSERT INTO _events (seq, tbl, id, rev, parent, deleted, body, chain)
        SELECT seq, tbl, id, rev, parent, deleted, body, chain FROM _revisions WHERE seq IS NOT NULL ORDER BY seq;
     CREATE UNIQUE INDEX _events_key ON _events (tbl, id, rev);
     CREATE TABLE _stubs (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT, PRIMARY KEY (tbl, id, rev)) WITHOUT ROWID;
     INSERT INTO _stubs (tbl, id, rev, parent) SELECT tbl, id, rev, parent FROM _revisions WHERE seq IS NULL;
     CREATE TABLE _states (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, deleted INTEGER NOT NULL, body TEXT,
        leaves TEXT NOT NULL, conflicts TEXT NOT NULL, field_conflicts TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (tbl, id)) WITHOUT ROWID;
     INSERT INTO _states (tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq)
        SELECT r.tbl, r.id, r.rev, r.deleted, CASE WHEN r.deleted = 0 AND e.body IS r.body THEN NULL ELSE r.body END,
               r.leaves, r.conflicts, r.field_conflicts, r.seq
        FROM _records r LEFT JOIN _events e ON e.tbl = r.tbl AND e.id = r.id AND e.rev = r.rev;
     DROP TABLE _revisions;
     DROP TABLE _records;
     ALTER TABLE _states RENAME TO _records;
     CREATE UNIQUE INDEX _records_seq ON _records (seq);",
    // 4: the class of each revision event (SPEC §3): a foreign revision's 16-byte body digest, NULL
    // for a native one, added at the end of each row (no row is rewritten); the events whose
    // revision's body a later event replaced (one body per id), without their bodies; and the local
    // documents of CouchDB-protocol peers (§17), never replicated.
    "ALTER TABLE _events ADD COLUMN digest BLOB;
     CREATE TABLE _superseded (
        seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT,
        deleted INTEGER NOT NULL, chain BLOB NOT NULL, digest BLOB);
     CREATE TABLE _local (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (tbl, id)) WITHOUT ROWID;",
];

/// Indexes that no write reads, which a bootstrap builds once after loading instead of keeping them
/// up row by row (`staging::Bootstrap`): the changes feed's index on the states' seq. Each is its
/// name and the statement that makes it.
pub(crate) const DEFERRED_INDEXES: &[(&str, &str)] =
    &[("_records_seq", "CREATE UNIQUE INDEX _records_seq ON _records (seq)")];

/// The first format whose views read `_events`: migrating to it from before makes them again.
const EVENTS_FORMAT: i64 = 3;

/// Bring a file to [`FORMAT_VERSION`]; fails clearly on a file of a newer format.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let newer = |version: i64| {
        Error::invalid(format!(
            "this database file has format version {version}, newer than this outpost reads ({FORMAT_VERSION}); \
             upgrade outpost to open it"
        ))
    };
    match version(conn)? {
        v if v > FORMAT_VERSION => return Err(newer(v)),
        FORMAT_VERSION => return Ok(()),
        _ => {}
    }
    // Under the write lock, read again: a second process opening the same old file waits, then
    // finds it migrated.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).sql()?;
    let version = version(&tx)?;
    if version > FORMAT_VERSION {
        return Err(newer(version));
    }
    let remake_views = version > 0 && version < EVENTS_FORMAT;
    let views = if remake_views { drop_views(&tx)? } else { Vec::new() };
    // A view someone made on the internal tables must not stop the renames (nor be rewritten).
    tx.pragma_update(None, "legacy_alter_table", true).sql()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).sql()?;
        tx.pragma_update(None, "user_version", i as i64 + 1).sql()?;
    }
    tx.pragma_update(None, "legacy_alter_table", false).sql()?;
    for table in views {
        ensure_views(&tx, &table)?;
    }
    // All of it or none: a migration interrupted anywhere leaves the file as it was.
    tx.commit().sql()
}

/// Drop the views Outpost made (`<table>` and `<table>_history` of each table ever defined; other
/// views are left), returning the tables whose views they were in the order the tables were first
/// defined: which decides, as when they were made, who has a name two tables could claim.
fn drop_views(conn: &Connection) -> Result<Vec<String>> {
    let views: std::collections::HashSet<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'view'")
        .sql()?
        .query_map([], |r| r.get(0))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    let tables: Vec<String> = conn
        .prepare("SELECT id FROM _revisions WHERE tbl = ?1 AND seq IS NOT NULL GROUP BY id ORDER BY min(seq)")
        .sql()?
        .query_map([names::TABLES_TABLE], |r| r.get(0))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    for table in &tables {
        for view in [table.clone(), format!("{table}_history")] {
            if views.contains(&view) {
                conn.execute_batch(&format!("DROP VIEW \"{}\"", view.replace('"', "\"\""))).sql()?;
            }
        }
    }
    Ok(tables.into_iter().filter(|t| views.contains(t)).collect())
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
           SELECT r.id, r.rev, coalesce(r.body, e.body) AS attributes, r.seq
           FROM _records r LEFT JOIN _events e ON e.tbl = r.tbl AND e.id = r.id AND e.rev = r.rev
           WHERE r.tbl = '{table}' AND r.deleted = 0;
         CREATE VIEW IF NOT EXISTS \"{table}_history\" AS
           SELECT id, rev, parent, deleted, body AS attributes, seq FROM _events WHERE tbl = '{table}'
           UNION ALL SELECT id, rev, parent, 0, NULL, NULL FROM _stubs WHERE tbl = '{table}';"
    ))
    .sql()
}
