//! Schema floors for B1: what inserting new records costs in a storage schema when everything Outpost
//! computes for them (revision ids, seqs, chain hashes, body JSON, reconciled states) is made
//! beforehand, untimed. The timed part is only the SQL a backend runs for them, with Outpost's PRAGMAs
//! (WAL, `synchronous = FULL`) and batching, one transaction per batch: the floor under what any
//! planner could reach on that schema, beside the bare insert of B1's reference. A schema whose floor
//! is far below the bare insert cannot carry B1's target, however fast the engine gets.
//!
//! - `format2`: the file format before format 3 (its tables and the statements its `write.rs` ran):
//!   six B-tree inserts per new record, its body stored twice.
//! - `format4`: formats 3 and 4 (tables made here as their migrations made them, and the statements
//!   their `write.rs` ran). Events keyed by their seq (append-only, the rowid), the body stored once
//!   there, the tree's keys an index on them and stubs in a table apart; the reconciled state
//!   (`WITHOUT ROWID`) without a copy of the body when it is the winner's own: four B-tree inserts.
//!   Revision ids as their 33-character text. (A candidate with the tree's keys in a table of their
//!   own instead of an index measured no faster and is gone.)
//! - `format5`: today's file format, the statements of `outpost-sqlite`'s `write.rs` on a file made by
//!   `outpost-sqlite` itself: format 4 with revision ids as a generation and a 16-byte hash, and no
//!   leaves list for a record whose only leaf is its winner.
//! - `format5-lean`: as `format5`, without the seq index on the states: the changes feed would scan
//!   the events by seq and keep those that are their record's latest (three B-tree inserts per new
//!   record).
//! - `tree-in-state`: as `format5`, without the index over every revision (`_events_key`): a model of a
//!   format that keeps each record's revision tree (ids, parents, seqs, stubs) packed in its state row,
//!   as CouchDB keeps a document's tree in its by-id index, so that reading a tree or answering a
//!   revs-diff is one lookup of the state. A new record's state row is format 5's (a one-revision tree
//!   is its winner, implied), so only the index goes: three B-tree inserts, with the changes feed's
//!   index kept.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_api::{Attributes, ChainHash, RevId, Uuid};
use outpost_engine::hash::{genesis_chain, next_chain, revision_id};
use rusqlite::{params, Connection};

use crate::records;
use crate::worker::{peak_rss, Measured, Rows, TABLE};

/// A candidate schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Schema {
    /// The format before format 3.
    Format2,
    /// Formats 3 and 4: revision ids as text.
    Format4,
    /// Today's format 5.
    Format5,
    /// As `Format5`, without the states' seq index.
    Format5Lean,
    /// As `Format5`, without the index over every revision (trees in the state rows).
    TreeInState,
}

impl Schema {
    /// Every candidate, in the order they are reported.
    pub const ALL: [Schema; 5] =
        [Schema::Format2, Schema::Format4, Schema::Format5, Schema::Format5Lean, Schema::TreeInState];

    /// The name on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Format2 => "format2",
            Schema::Format4 => "format4",
            Schema::Format5 => "format5",
            Schema::Format5Lean => "format5-lean",
            Schema::TreeInState => "tree-in-state",
        }
    }

    /// Whether the file is today's format, made by `outpost-sqlite`.
    fn is_todays(self) -> bool {
        matches!(self, Schema::Format5 | Schema::Format5Lean | Schema::TreeInState)
    }
}

/// Format 2's tables, as its migrations made them.
const FORMAT2: &str = "
    CREATE TABLE _meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
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
    INSERT INTO _meta (key, value) VALUES ('update_seq', 0), ('chain', x''), ('record_count', 0);";

/// Format 4's tables that a new record's write touches, as its migrations made them.
const FORMAT4: &str = "
    CREATE TABLE _meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE _events (
        seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT,
        deleted INTEGER NOT NULL, body TEXT, chain BLOB NOT NULL, digest BLOB);
    CREATE UNIQUE INDEX _events_key ON _events (tbl, id, rev);
    CREATE TABLE _stubs (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT,
        PRIMARY KEY (tbl, id, rev)) WITHOUT ROWID;
    CREATE TABLE _records (
        tbl TEXT NOT NULL, id TEXT NOT NULL, rev TEXT NOT NULL, deleted INTEGER NOT NULL, body TEXT,
        leaves TEXT NOT NULL, conflicts TEXT NOT NULL, field_conflicts TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (tbl, id)) WITHOUT ROWID;
    CREATE UNIQUE INDEX _records_seq ON _records (seq);
    INSERT INTO _meta (key, value) VALUES ('update_seq', 0), ('chain', x''), ('record_count', 0);";

/// One new record as Outpost would store it, made untimed.
struct Prepared {
    id: String,
    rev: RevId,
    body: String,
    seq: i64,
    chain: ChainHash,
}

/// Everything of one batch, in seq order, continuing the chain from `prev`.
fn prepare(rows: &Rows, chunk: std::ops::Range<u64>, next_seq: &mut i64, prev: &mut ChainHash) -> Vec<Prepared> {
    chunk
        .map(|index| {
            let id = records::id(index);
            let attributes = Attributes::from_plain(&records::attributes(rows.seed, index, rows.version))
                .expect("the seeded records are valid attributes");
            let rev = revision_id(TABLE, &id, None, false, &attributes);
            *next_seq += 1;
            let chain = next_chain(prev, *next_seq as u64, TABLE, &id, &rev, false);
            *prev = chain;
            let body = serde_json::to_string(&attributes).expect("attributes encode");
            Prepared { id, rev, body, seq: *next_seq, chain }
        })
        .collect()
}

/// Insert `rows` (new records only) into a fresh file at `path` in `schema`; only the SQL is timed.
pub fn floor(path: &Path, rows: Rows, schema: Schema) -> Result<Measured, String> {
    if rows.version != 0 {
        return Err("a schema floor inserts new records only (version 0)".into());
    }
    let conn = open(path, schema)?;
    let sql = |e: rusqlite::Error| format!("sqlite: {e}");
    // Today's file has its own identity: its chain continues from the genesis stored there.
    let mut prev = match schema {
        _ if schema.is_todays() => {
            let stored: Vec<u8> =
                conn.query_row("SELECT value FROM _meta WHERE key = 'chain'", [], |r| r.get(0)).map_err(sql)?;
            ChainHash(stored.try_into().map_err(|_| "the stored chain is not 32 bytes".to_owned())?)
        }
        _ => genesis_chain(Uuid::nil()),
    };
    let mut next_seq = 0i64;
    let mut timed = Duration::ZERO;
    for chunk in rows.chunks() {
        let batch = prepare(&rows, chunk, &mut next_seq, &mut prev);
        let started = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        insert(&conn, schema, &batch).map_err(sql)?;
        let last = batch.last().expect("a batch holds a record");
        conn.execute("UPDATE _meta SET value = ?1 WHERE key = 'update_seq'", [last.seq]).map_err(sql)?;
        conn.execute("UPDATE _meta SET value = ?1 WHERE key = 'chain'", [&last.chain.0[..]]).map_err(sql)?;
        conn.execute("UPDATE _meta SET value = value + ?1 WHERE key = 'record_count'", [batch.len() as i64])
            .map_err(sql)?;
        conn.execute_batch("COMMIT").map_err(sql)?;
        timed += started.elapsed();
    }
    Ok(Measured { records: rows.count, seconds: timed.as_secs_f64(), peak_rss_bytes: peak_rss() })
}

/// A fresh file in `schema`, with Outpost's connection settings.
fn open(path: &Path, schema: Schema) -> Result<Connection, String> {
    let sql = |e: rusqlite::Error| format!("sqlite: {e}");
    if schema.is_todays() {
        // The real format: made by outpost-sqlite, then written here with its own statements.
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("floor").replace(['.', '-'], "_");
        let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
        runtime.block_on(outpost_sqlite::create_file(path, &name, Default::default())).map_err(|e| e.to_string())?;
    }
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(outpost_sqlite::BUSY_TIMEOUT).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    match schema {
        Schema::Format5 => {}
        Schema::Format5Lean => conn.execute_batch("DROP INDEX _records_seq").map_err(sql)?,
        Schema::TreeInState => conn.execute_batch("DROP INDEX _events_key").map_err(sql)?,
        Schema::Format2 => conn.execute_batch(FORMAT2).map_err(sql)?,
        Schema::Format4 => conn.execute_batch(FORMAT4).map_err(sql)?,
    }
    Ok(conn)
}

/// The statements a backend runs for a batch of new records in `schema`.
fn insert(conn: &Connection, schema: Schema, batch: &[Prepared]) -> rusqlite::Result<()> {
    const NO_CONFLICTS: &str = "";
    match schema {
        Schema::Format2 => {
            let mut event = conn.prepare_cached(
                "INSERT INTO _revisions (tbl, id, rev, parent, deleted, body, seq, chain)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tbl, id, rev) DO UPDATE SET parent = coalesce(parent, excluded.parent),
                   deleted = excluded.deleted, body = excluded.body, seq = excluded.seq, chain = excluded.chain",
            )?;
            let mut state = conn.prepare_cached(
                "INSERT INTO _records (tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted,
                   body = excluded.body, leaves = excluded.leaves, conflicts = excluded.conflicts,
                   field_conflicts = excluded.field_conflicts, seq = excluded.seq",
            )?;
            for p in batch {
                let rev = p.rev.text();
                event.execute(params![
                    TABLE,
                    p.id,
                    rev.as_str(),
                    None::<String>,
                    false,
                    p.body,
                    p.seq,
                    &p.chain.0[..]
                ])?;
            }
            for p in batch {
                let rev = p.rev.text();
                state.execute(params![
                    TABLE,
                    p.id,
                    rev.as_str(),
                    false,
                    p.body,
                    rev.as_str(),
                    NO_CONFLICTS,
                    "[]",
                    p.seq
                ])?;
            }
        }
        Schema::Format4 => {
            // As its write.rs for new records: no stub to replace (the engine says so), the event.
            let mut event = conn.prepare_cached(
                "INSERT INTO _events (seq, tbl, id, rev, parent, deleted, body, chain, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for p in batch {
                let rev = p.rev.text();
                let row = (p.seq, TABLE, &p.id, rev.as_str(), None::<String>, false, &p.body, &p.chain.0[..]);
                event.execute(params![row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, None::<Vec<u8>>])?;
            }
            // The winner's own body is not copied: the state reads it from the winner's event.
            let mut state = conn.prepare_cached(
                "INSERT INTO _records (tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted,
                   body = excluded.body, leaves = excluded.leaves, conflicts = excluded.conflicts,
                   field_conflicts = excluded.field_conflicts, seq = excluded.seq",
            )?;
            for p in batch {
                let rev = p.rev.text();
                state.execute(params![TABLE, p.id, rev.as_str(), false, rev.as_str(), NO_CONFLICTS, "[]", p.seq])?;
            }
        }
        Schema::Format5 | Schema::Format5Lean | Schema::TreeInState => {
            // As write.rs for new records: the event, then the state without the winner's body, with
            // its only leaf implied and no conflicts (both NULL).
            let mut event = conn.prepare_cached(
                "INSERT INTO _events (seq, tbl, id, gen, hash, parent, deleted, body, chain, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0, ?6, ?7, NULL)",
            )?;
            for p in batch {
                let generation = p.rev.generation as i64;
                event.execute(params![p.seq, TABLE, p.id, generation, &p.rev.hash[..], p.body, &p.chain.0[..]])?;
            }
            let mut state = conn.prepare_cached(
                "INSERT INTO _records (tbl, id, gen, hash, deleted, body, leaves, conflicts, field_conflicts, seq)
                 VALUES (?1, ?2, ?3, ?4, 0, NULL, NULL, NULL, '[]', ?5)
                 ON CONFLICT (tbl, id) DO UPDATE SET gen = excluded.gen, hash = excluded.hash,
                   deleted = excluded.deleted, body = excluded.body, leaves = excluded.leaves,
                   conflicts = excluded.conflicts, field_conflicts = excluded.field_conflicts, seq = excluded.seq",
            )?;
            for p in batch {
                state.execute(params![TABLE, p.id, p.rev.generation as i64, &p.rev.hash[..], p.seq])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_api::{ChangeReader, ChangesRequest};

    #[test]
    fn every_schema_holds_the_rows_and_todays_floor_is_a_sound_database() {
        let dir = tempfile::tempdir().unwrap();
        let rows = Rows { seed: 5, from: 0, count: 120, version: 0, batch: 50 };
        for schema in Schema::ALL {
            let path = dir.path().join(format!("{}.outpost", schema.name()));
            let measured = floor(&path, rows, schema).unwrap();
            assert_eq!(measured.records, 120);
            let conn = Connection::open(&path).unwrap();
            let states: i64 = conn.query_row("SELECT count(*) FROM _records", [], |r| r.get(0)).unwrap();
            assert_eq!(states, 120, "{schema:?}");
            let seq: i64 =
                conn.query_row("SELECT value FROM _meta WHERE key = 'update_seq'", [], |r| r.get(0)).unwrap();
            assert_eq!(seq, 120, "{schema:?}");
        }
        // Today's floor wrote what Outpost writes: the file passes Outpost's own check, and reads back.
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (report, change) = runtime.block_on(async {
            let db = outpost_sqlite::open_file(&dir.path().join("format5.outpost"), Default::default()).await.unwrap();
            let changes = db.changes(ChangesRequest { since: 0, limit: 200, tables: None }).await.unwrap();
            (db.check().await.unwrap(), changes.changes.into_iter().find(|c| c.id == records::id(7)).unwrap())
        });
        assert_eq!((report.events, report.records), (120, 120));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let attributes = Attributes::from_plain(&records::attributes(5, 7, 0)).unwrap();
        let rev = revision_id(TABLE, &records::id(7), None, false, &attributes);
        assert_eq!((change.rev, change.leaves), (rev, vec![rev]));
    }
}
