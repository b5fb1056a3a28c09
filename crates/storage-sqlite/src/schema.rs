//! The file format: versioned schema migrations (`PRAGMA user_version`) and per-table SQL views.
//!
//! Internal tables start with `_` so they never collide with a view of a user table (user table names
//! cannot start with `_`). Format 5's tables:
//!
//! - `_events`: one row per revision event, keyed by its seq (the rowid: appended in order, no seq
//!   index of its own), with the revision's body, the only copy of it, and (format 4) a foreign
//!   revision's digest (SPEC §3); `_events_key` finds a revision by (table, id, gen, hash).
//! - `_stubs`: revisions known only by id (ancestors from a peer's ancestry), apart from the events;
//!   a revision is in one of the two, and leaves `_stubs` when its event arrives.
//! - `_records`: the reconciled state of each record, keyed by (table, id) without a rowid, a live
//!   record's `body` NULL when it is the winner's own (read from the winner's event; a deleted one
//!   keeps its `{}`); `_records_seq` orders the changes feed.
//! - `_meta` (head, chain, live-record count), `_epochs`, `_knowledge`, `_resume`.
//! - `_superseded` (format 4): events whose revision's body a later event replaced (SPEC §3), keyed
//!   by seq, without their bodies: the history's fold to the chain hash needs them.
//! - `_local` (format 4): the local documents of CouchDB-protocol peers (SPEC §17), by (table, id).
//!
//! Revision ids (format 5) are stored compactly (a file of new records is about a fifth smaller than
//! with their text): each as its generation (`gen`, an integer) and its 16-byte hash (`hash`), a
//! parent as its hash alone (its generation is one less than its child's, so no parent of the wrong
//! generation can be stored), and a state's `leaves` and `conflicts` packed by `stored::pack_revs`,
//! NULL for none and the leaves NULL when the winner is the only one. The views show them as the text
//! the api does, in plain SQL.

use outpost_api::{names, Error, Result, RevId};
use outpost_engine::storage::stored;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::SqlResultExt;

/// The newest file format this build reads and writes.
pub const FORMAT_VERSION: i64 = 5;

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
    // 5: revision ids compact (see the module's doc): each text `gen-hex` becomes its generation and
    // its 16-byte hash, a parent its hash alone. Lists of them are packed by `pack_rev_lists` after
    // this: here a state's leaves become NULL when the winner is the only one, its conflicts NULL
    // when there are none, and any other list stays text for that pass. `check_rev_texts`
    // refuses a file whose ids this would not convert exactly.
    "CREATE TABLE _events5 (
        seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, id TEXT NOT NULL, gen INTEGER NOT NULL, hash BLOB NOT NULL,
        parent BLOB, deleted INTEGER NOT NULL, body TEXT, chain BLOB NOT NULL, digest BLOB);
     INSERT INTO _events5 (seq, tbl, id, gen, hash, parent, deleted, body, chain, digest)
        SELECT seq, tbl, id, CAST(substr(rev, 1, instr(rev, '-') - 1) AS INTEGER), unhex(substr(rev, instr(rev, '-') + 1)),
               unhex(substr(parent, instr(parent, '-') + 1)), deleted, body, chain, digest
        FROM _events ORDER BY seq;
     DROP TABLE _events;
     ALTER TABLE _events5 RENAME TO _events;
     CREATE UNIQUE INDEX _events_key ON _events (tbl, id, gen, hash);
     CREATE TABLE _superseded5 (
        seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, id TEXT NOT NULL, gen INTEGER NOT NULL, hash BLOB NOT NULL,
        parent BLOB, deleted INTEGER NOT NULL, chain BLOB NOT NULL, digest BLOB);
     INSERT INTO _superseded5 (seq, tbl, id, gen, hash, parent, deleted, chain, digest)
        SELECT seq, tbl, id, CAST(substr(rev, 1, instr(rev, '-') - 1) AS INTEGER), unhex(substr(rev, instr(rev, '-') + 1)),
               unhex(substr(parent, instr(parent, '-') + 1)), deleted, chain, digest
        FROM _superseded ORDER BY seq;
     DROP TABLE _superseded;
     ALTER TABLE _superseded5 RENAME TO _superseded;
     CREATE TABLE _stubs5 (
        tbl TEXT NOT NULL, id TEXT NOT NULL, gen INTEGER NOT NULL, hash BLOB NOT NULL, parent BLOB,
        PRIMARY KEY (tbl, id, gen, hash)) WITHOUT ROWID;
     INSERT INTO _stubs5 (tbl, id, gen, hash, parent)
        SELECT tbl, id, CAST(substr(rev, 1, instr(rev, '-') - 1) AS INTEGER), unhex(substr(rev, instr(rev, '-') + 1)),
               unhex(substr(parent, instr(parent, '-') + 1))
        FROM _stubs;
     DROP TABLE _stubs;
     ALTER TABLE _stubs5 RENAME TO _stubs;
     CREATE TABLE _records5 (
        tbl TEXT NOT NULL, id TEXT NOT NULL, gen INTEGER NOT NULL, hash BLOB NOT NULL, deleted INTEGER NOT NULL,
        body TEXT, leaves BLOB, conflicts BLOB, field_conflicts TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (tbl, id)) WITHOUT ROWID;
     INSERT INTO _records5 (tbl, id, gen, hash, deleted, body, leaves, conflicts, field_conflicts, seq)
        SELECT tbl, id, CAST(substr(rev, 1, instr(rev, '-') - 1) AS INTEGER), unhex(substr(rev, instr(rev, '-') + 1)),
               deleted, body, CASE WHEN leaves IS NOT rev THEN leaves END,
               CASE WHEN conflicts IS NOT '' THEN conflicts END, field_conflicts, seq
        FROM _records;
     DROP TABLE _records;
     ALTER TABLE _records5 RENAME TO _records;
     CREATE UNIQUE INDEX _records_seq ON _records (seq);",
];

/// The first format with compact revision ids: migrating to it converts them (`check_rev_texts`
/// before, `pack_rev_lists` after its SQL).
const COMPACT_FORMAT: i64 = 5;

/// The tables holding revision ids as text before [`COMPACT_FORMAT`], each with its columns of one
/// id (the first its own, a second its parent).
const REV_TEXT_COLUMNS: &[(&str, &[&str])] = &[
    ("_events", &["rev", "parent"]),
    ("_superseded", &["rev", "parent"]),
    ("_stubs", &["rev", "parent"]),
    ("_records", &["rev"]),
];

/// Refuse (as corrupt, before anything is converted) a file whose revision ids are not each exactly
/// `gen-hex` with a 16-byte hash, or whose parents are not one generation below their child: the
/// conversion would lose or change them.
fn check_rev_texts(conn: &Connection) -> Result<()> {
    let generation = |c: &str| format!("CAST(substr({c}, 1, instr({c}, '-') - 1) AS INTEGER)");
    let hash = |c: &str| format!("unhex(substr({c}, instr({c}, '-') + 1))");
    for (table, columns) in REV_TEXT_COLUMNS {
        for column in columns.iter() {
            let (g, h) = (generation(column), hash(column));
            let mut bad = format!(
                "{g} < 1 OR {g} > {max} OR length({h}) IS NOT 16 OR {g} || '-' || lower(hex({h})) IS NOT {column}",
                max = outpost_api::MAX_GENERATION
            );
            if *column == "parent" {
                bad = format!("{bad} OR {g} IS NOT {} - 1", generation("rev"));
            }
            let sql = format!("SELECT rev FROM {table} WHERE {column} IS NOT NULL AND ({bad}) LIMIT 1");
            if let Some(rev) = conn.query_row(&sql, [], |r| r.get::<_, String>(0)).optional().sql()? {
                return Err(Error::corrupt(format!(
                    "{table}: the {column} of revision {rev:?} is not a revision id this format can hold"
                )));
            }
        }
    }
    // The lists are text (which `pack_rev_lists` parses); anything else would be copied unread.
    let lists =
        "SELECT rev FROM _records WHERE typeof(leaves) IS NOT 'text' OR typeof(conflicts) IS NOT 'text' LIMIT 1";
    if let Some(rev) = conn.query_row(lists, [], |r| r.get::<_, String>(0)).optional().sql()? {
        return Err(Error::corrupt(format!("_records: the leaves or conflicts of revision {rev:?} are not text")));
    }
    Ok(())
}

/// Pack the states' lists of revision ids the migration's SQL left as text (leaves other than the
/// winner alone, and conflicts): few rows, parsed and packed one by one.
fn pack_rev_lists(conn: &Connection) -> Result<()> {
    let mut read = conn
        .prepare(
            "SELECT tbl, id, gen, hash, leaves, conflicts FROM _records
             WHERE typeof(leaves) = 'text' OR typeof(conflicts) = 'text'",
        )
        .sql()?;
    let mut write = conn.prepare("UPDATE _records SET leaves = ?3, conflicts = ?4 WHERE tbl = ?1 AND id = ?2").sql()?;
    let mut rows = read.query([]).sql()?;
    while let Some(row) = rows.next().sql()? {
        let (table, id): (String, String) = (row.get(0).sql()?, row.get(1).sql()?);
        let winner = stored::rev_of(row.get(2).sql()?, &row.get::<_, Vec<u8>>(3).sql()?)?;
        // NULL: what the SQL made of a list of the winner alone (leaves) or of none (conflicts).
        let list = |i: usize, implied: Option<&RevId>| -> Result<Vec<RevId>> {
            match row.get_ref(i).sql()? {
                ValueRef::Text(t) => {
                    stored::rev_list(std::str::from_utf8(t).map_err(|_| Error::corrupt("a stored list is not UTF-8"))?)
                }
                ValueRef::Null => Ok(implied.into_iter().copied().collect()),
                _ => Err(Error::corrupt(format!("record {table}/{id}: a stored list of revision ids is not text"))),
            }
        };
        let (leaves, conflicts) = (list(4, Some(&winner))?, list(5, None)?);
        if leaves.is_empty() {
            return Err(Error::corrupt(format!("record {table}/{id} has no leaf")));
        }
        write
            .execute(params![table, id, stored::pack_revs(&leaves, Some(&winner)), stored::pack_revs(&conflicts, None)])
            .sql()?;
    }
    Ok(())
}

/// Indexes that no write reads, which a bootstrap builds once after loading instead of keeping them
/// up row by row (`staging::Bootstrap`): the changes feed's index on the states' seq. Each is its
/// name and the statement that makes it.
pub(crate) const DEFERRED_INDEXES: &[(&str, &str)] =
    &[("_records_seq", "CREATE UNIQUE INDEX _records_seq ON _records (seq)")];

/// The first format whose tables of revisions are `_events` and `_stubs` (before it, `_revisions`).
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
    let started = std::time::Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).sql()?;
    let version = version(&tx)?;
    if version > FORMAT_VERSION {
        return Err(newer(version));
    }
    if version > 0 {
        tracing::info!(from = version, to = FORMAT_VERSION, "migrating a database file (seconds per million records)");
    }
    // Outpost's views read the columns the migrations change: they are dropped before and made again
    // after.
    let views = if version > 0 { drop_views(&tx, version)? } else { Vec::new() };
    // A view someone made on the internal tables must not stop the renames (nor be rewritten).
    tx.pragma_update(None, "legacy_alter_table", true).sql()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = i as i64 + 1;
        if to == COMPACT_FORMAT {
            check_rev_texts(&tx)?;
        }
        tx.execute_batch(sql).sql()?;
        if to == COMPACT_FORMAT {
            pack_rev_lists(&tx)?;
        }
        tx.pragma_update(None, "user_version", to).sql()?;
    }
    tx.pragma_update(None, "legacy_alter_table", false).sql()?;
    for table in views {
        ensure_views(&tx, &table)?;
    }
    if version > 0 && version < COMPACT_FORMAT {
        return_free_pages(&tx)?;
    }
    // All of it or none: a migration interrupted anywhere leaves the file as it was.
    tx.commit().sql()?;
    if version > 0 {
        tracing::info!(
            from = version,
            to = FORMAT_VERSION,
            seconds = started.elapsed().as_secs_f64(),
            "migrated a database file"
        );
    }
    Ok(())
}

/// Return to the file system the pages a migration that rewrote tables left free (the old tables'),
/// when the file returns free pages at all (`auto_vacuum` incremental, as files are made): a file of
/// format 4 would otherwise stay about two thirds larger after its move to format 5.
fn return_free_pages(conn: &Connection) -> Result<()> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).sql()?;
    if mode == crate::store::INCREMENTAL_VACUUM {
        return crate::store::incremental_vacuum(conn, None);
    }
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).sql()?;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).sql()?;
    tracing::warn!(
        free_bytes = free * page,
        "a file made before files returned free space keeps its old tables' pages after the migration, \
         for new rows; `outpost db compact --vacuum` returns them to the file system"
    );
    Ok(())
}

/// Drop the views Outpost made (`<table>` and `<table>_history` of each table ever defined) in a file
/// of format `version`, returning the tables whose views they were in the order the tables were first
/// defined: which decides, as when they were made, who has a name two tables could claim. A view is
/// Outpost's when its name is one of a table's two and its SQL selects that table's rows (`tbl =
/// '<table>'`, as every format's views have): a view someone else made under such a name is left,
/// and each view is dropped once, even when two tables could claim its name (`t` and `t_history`).
fn drop_views(conn: &Connection, version: i64) -> Result<Vec<String>> {
    let views: Vec<(String, String)> = conn
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'view'")
        .sql()?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    let tables = if version < EVENTS_FORMAT {
        "SELECT id FROM _revisions WHERE tbl = ?1 AND seq IS NOT NULL GROUP BY id ORDER BY min(seq)"
    } else {
        "SELECT id FROM _events WHERE tbl = ?1 GROUP BY id ORDER BY min(seq)"
    };
    let tables: Vec<String> = conn
        .prepare(tables)
        .sql()?
        .query_map([names::TABLES_TABLE], |r| r.get(0))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    let mut remade = Vec::new();
    for table in tables {
        let rows = format!("tbl = '{table}'");
        let mut any = false;
        for name in [table.clone(), format!("{table}_history")] {
            if views.iter().any(|(view, sql)| *view == name && sql.contains(&rows)) {
                conn.execute_batch(&format!("DROP VIEW \"{}\"", name.replace('"', "\"\""))).sql()?;
                any = true;
            }
        }
        if any {
            remade.push(table);
        }
    }
    Ok(remade)
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
           SELECT r.id, r.gen || '-' || lower(hex(r.hash)) AS rev, coalesce(r.body, e.body) AS attributes, r.seq
           FROM _records r LEFT JOIN _events e ON e.tbl = r.tbl AND e.id = r.id AND e.gen = r.gen AND e.hash = r.hash
           WHERE r.tbl = '{table}' AND r.deleted = 0;
         CREATE VIEW IF NOT EXISTS \"{table}_history\" AS
           SELECT id, {rev}, {parent}, deleted, body AS attributes, seq FROM _events WHERE tbl = '{table}'
           UNION ALL SELECT id, {rev}, {parent}, 0, NULL, NULL FROM _stubs WHERE tbl = '{table}';",
        rev = "gen || '-' || lower(hex(hash)) AS rev",
        parent = "CASE WHEN parent IS NOT NULL THEN (gen - 1) || '-' || lower(hex(parent)) END AS parent"
    ))
    .sql()
}
