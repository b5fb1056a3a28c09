//! Writes: a [`WriteTxn`] holding the connection inside `BEGIN IMMEDIATE … COMMIT`, each step run on
//! the blocking pool, and `apply`, which stores a write set row by row with cached statements.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use outpost_api::{Error, Result};
use outpost_engine::storage::stored;
use outpost_engine::storage::{blocking, Head, RecordKey, StoredRevision, StoredState, WriteSet, WriteTxn};
use outpost_engine::tree::RevisionTree;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::checkpoint::Checkpointer;
use crate::error::SqlResultExt;
use crate::schema;
use crate::staging::Written;
use crate::store::{load_state, local_doc, open_in, read_head, STATE_COLUMNS};
use crate::trees::trees;

/// Begin a write transaction on the connection in `conn`, once no other writer of this process holds
/// it; waits up to the busy timeout for another process's writer.
pub(crate) async fn begin(
    conn: Arc<Mutex<Option<Connection>>>,
    checkpoints: Arc<Checkpointer>,
    written: Option<Arc<std::sync::Mutex<Written>>>,
) -> Result<Box<dyn WriteTxn>> {
    let slot = conn.lock_owned().await;
    let txn = blocking(move || {
        open_in(&slot)?.execute_batch("BEGIN IMMEDIATE").sql()?;
        Ok::<_, Error>(OpenTxn { slot, open: true })
    })
    .await??;
    Ok(Box::new(SqliteWriteTxn { txn: Some(txn), checkpoints, bytes: 0, written }))
}

/// Rows per multi-row `INSERT`: one statement's setup and teardown shared by this many rows.
const ROWS: usize = 50;

const EVENTS: &str = "INSERT INTO _events (seq, tbl, id, gen, hash, parent, deleted, body, chain, digest)";
const EVENT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const STATE_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const STATES_ON_CONFLICT: &str = "ON CONFLICT (tbl, id) DO UPDATE SET gen = excluded.gen, hash = excluded.hash,
    deleted = excluded.deleted,
    body = excluded.body, leaves = excluded.leaves, conflicts = excluded.conflicts,
    field_conflicts = excluded.field_conflicts, seq = excluded.seq";

/// `head VALUES row, row, … tail` with `n` rows.
fn rows_sql(head: &str, row: &str, n: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + 8 + n * (row.len() + 2) + tail.len());
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// An `INSERT`'s SQL for [`ROWS`] rows (first) and for one (second), made once per process: each
/// statement is looked up in the connection's cache by its text, which need not be built for every
/// chunk.
type RowsSql = LazyLock<[String; 2]>;

static EVENT_ROWS: RowsSql =
    LazyLock::new(|| [rows_sql(EVENTS, EVENT_ROW, ROWS, ""), rows_sql(EVENTS, EVENT_ROW, 1, "")]);

static STATE_ROWS: RowsSql = LazyLock::new(|| {
    let head = format!("INSERT INTO _records ({STATE_COLUMNS})");
    [rows_sql(&head, STATE_ROW, ROWS, STATES_ON_CONFLICT), rows_sql(&head, STATE_ROW, 1, STATES_ON_CONFLICT)]
});

/// Binds one row's values after the last, in order.
struct Binder<'s, 'c> {
    stmt: &'s mut rusqlite::CachedStatement<'c>,
    next: usize,
}

impl Binder<'_, '_> {
    fn put<V: rusqlite::ToSql>(&mut self, value: V) -> Result<()> {
        self.next += 1;
        self.stmt.raw_bind_parameter(self.next, value).sql()
    }
}

/// Insert `items` with `sql`, [`ROWS`] to a statement (the rest one to a statement), `bind` giving
/// each item's values.
fn insert_rows<T>(
    conn: &Connection,
    sql: &RowsSql,
    items: &[T],
    bind: impl Fn(&mut Binder<'_, '_>, &T) -> Result<()>,
) -> Result<()> {
    for chunk in items.chunks(ROWS) {
        let (per_statement, sql) = if chunk.len() == ROWS { (ROWS, &sql[0]) } else { (1, &sql[1]) };
        let mut stmt = conn.prepare_cached(sql).sql()?;
        for rows in chunk.chunks(per_statement) {
            let mut binder = Binder { stmt: &mut stmt, next: 0 };
            for item in rows {
                bind(&mut binder, item)?;
            }
            stmt.raw_execute().sql()?;
        }
    }
    Ok(())
}

fn apply(conn: &Connection, writes: &WriteSet) -> Result<()> {
    // Events a new one replaces leave `_events` (and their bodies) first: the revision's row is
    // the new event's.
    for r in writes.revisions.iter().filter(|r| r.event.is_some()) {
        if let Some(old) = r.replaces {
            conn.prepare_cached(
                "INSERT INTO _superseded (seq, tbl, id, gen, hash, parent, deleted, chain, digest)
                 SELECT seq, tbl, id, gen, hash, parent, deleted, chain, digest FROM _events WHERE seq = ?1",
            )
            .sql()?
            .execute([old as i64])
            .sql()?;
            conn.prepare_cached("DELETE FROM _events WHERE seq = ?1").sql()?.execute([old as i64]).sql()?;
        }
        // An event whose body a later one of this set replaces goes straight to the superseded.
        if let (true, Some((seq, chain))) = (r.superseded, r.event) {
            conn.prepare_cached(
                "INSERT INTO _superseded (seq, tbl, id, gen, hash, parent, deleted, chain, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .sql()?
            .execute(params![
                seq as i64,
                r.table,
                r.id,
                r.rev.generation as i64,
                &r.rev.hash[..],
                r.parent.as_ref().map(|p| &p.hash[..]),
                r.deleted,
                &chain.0[..],
                r.foreign.as_ref().map(|d| &d.0[..])
            ])
            .sql()?;
        }
    }
    if writes.fills_stubs {
        store_revisions_one_by_one(conn, writes.revisions.iter().filter(|r| !r.superseded))?;
    } else {
        // No event takes a stub's place: the stub entries, then the events many to a statement (a
        // stub entry is never after its event).
        store_revisions_one_by_one(conn, writes.revisions.iter().filter(|r| r.event.is_none()))?;
        let events: Vec<&StoredRevision> =
            writes.revisions.iter().filter(|r| r.event.is_some() && !r.superseded).collect();
        insert_rows(conn, &EVENT_ROWS, &events, |b, r| {
            let (seq, chain) = r.event.expect("an event");
            b.put(seq as i64)?;
            b.put(&r.table)?;
            b.put(&r.id)?;
            b.put(r.rev.generation as i64)?;
            b.put(&r.rev.hash[..])?;
            b.put(r.parent.as_ref().map(|p| &p.hash[..]))?;
            b.put(r.deleted)?;
            b.put(&r.body)?;
            b.put(&chain.0[..])?;
            b.put(r.foreign.as_ref().map(|d| &d.0[..]))
        })?;
    }
    insert_rows(conn, &STATE_ROWS, &writes.states, |b, s| {
        b.put(&s.table)?;
        b.put(&s.id)?;
        b.put(s.rev.generation as i64)?;
        b.put(&s.rev.hash[..])?;
        b.put(s.deleted)?;
        // A live state's body is its winner's (the write set's rule), which the winner's event holds;
        // a deleted one's is `{}`, whatever its tombstone carries.
        b.put(s.deleted.then_some(&s.body))?;
        b.put(stored::pack_revs(&s.leaves, Some(&s.rev)))?;
        b.put(stored::pack_revs(&s.conflicts, None))?;
        b.put(&*stored::encode_field_conflicts(&s.field_conflicts))?;
        b.put(s.seq as i64)
    })?;
    if let Some((seq, chain)) = writes.head {
        conn.prepare_cached("UPDATE _meta SET value = ?1 WHERE key = 'update_seq'")
            .sql()?
            .execute([seq as i64])
            .sql()?;
        conn.prepare_cached("UPDATE _meta SET value = ?1 WHERE key = 'chain'").sql()?.execute([&chain.0[..]]).sql()?;
    }
    if let Some(n) = writes.record_count {
        conn.execute(
            "INSERT INTO _meta (key, value) VALUES ('record_count', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [n as i64],
        )
        .sql()?;
    }
    if writes.live_records != 0 {
        conn.prepare_cached("UPDATE _meta SET value = value + ?1 WHERE key = 'record_count'")
            .sql()?
            .execute([writes.live_records])
            .sql()?;
    }
    if let Some(p) = writes.resume {
        conn.execute(
            "INSERT INTO _resume (source, source_seq, source_chain) VALUES (?1, ?2, ?3)
             ON CONFLICT (source) DO UPDATE SET source_seq = excluded.source_seq, source_chain = excluded.source_chain",
            params![&p.source.as_bytes()[..], p.source_seq as i64, &p.source_chain.0[..]],
        )
        .sql()?;
    }
    for l in &writes.local_docs {
        match &l.doc {
            Some((rev, body)) => conn
                .prepare_cached(
                    "INSERT INTO _local (tbl, id, rev, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, body = excluded.body",
                )
                .sql()?
                .execute(params![l.table, l.id, *rev as i64, body]),
            None => conn
                .prepare_cached("DELETE FROM _local WHERE tbl = ?1 AND id = ?2")
                .sql()?
                .execute(params![l.table, l.id]),
        }
        .sql()?;
    }
    for (seq, body) in &writes.fill_bodies {
        conn.prepare_cached("UPDATE _events SET body = ?2 WHERE seq = ?1")
            .sql()?
            .execute(params![*seq as i64, body])
            .sql()?;
    }
    for seq in &writes.drop_bodies {
        drop_body(conn, *seq as i64)?;
    }
    for (peer, peer_seq) in &writes.forget_knowledge {
        conn.prepare_cached("DELETE FROM _knowledge WHERE peer = ?1 AND peer_seq = ?2")
            .sql()?
            .execute(params![&peer.as_bytes()[..], *peer_seq as i64])
            .sql()?;
    }
    for k in &writes.knowledge {
        conn.execute(
            "INSERT INTO _knowledge (peer, peer_seq, peer_chain, local_seq, via) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (peer, peer_seq) DO NOTHING",
            params![
                &k.peer.as_bytes()[..],
                k.peer_seq as i64,
                &k.peer_chain.0[..],
                k.local_seq as i64,
                k.via.map(|v| v.as_bytes().to_vec())
            ],
        )
        .sql()?;
    }
    if let Some(e) = writes.epoch {
        conn.execute(
            "INSERT INTO _epochs (position, uuid, start_seq) VALUES ((SELECT count(*) FROM _epochs), ?1, ?2)",
            params![&e.uuid.as_bytes()[..], e.start_seq as i64],
        )
        .sql()?;
    }
    for table in &writes.views {
        schema::ensure_views(conn, table)?;
    }
    Ok(())
}

/// Store event `seq` again without its body. Deleted and inserted, not updated: SQLite shrinks a row
/// updated in place within its page and frees nothing (and `_events` only grows at its end, so the
/// room would never be used again), while a delete merges pages left nearly empty, which then go to
/// the free list that `reclaim_space` returns to the file system.
fn drop_body(conn: &Connection, seq: i64) -> Result<()> {
    type Event = (String, String, i64, Vec<u8>, Option<Vec<u8>>, bool, Vec<u8>, Option<Vec<u8>>);
    let event: Option<Event> = conn
        .prepare_cached("SELECT tbl, id, gen, hash, parent, deleted, chain, digest FROM _events WHERE seq = ?1")
        .sql()?
        .query_row([seq], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })
        .optional()
        .sql()?;
    let Some((table, id, generation, hash, parent, deleted, chain, digest)) = event else { return Ok(()) };
    conn.prepare_cached("DELETE FROM _events WHERE seq = ?1").sql()?.execute([seq]).sql()?;
    conn.prepare_cached(&format!("{EVENTS} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9)"))
        .sql()?
        .execute(params![seq, table, id, generation, hash, parent, deleted, chain, digest])
        .sql()?;
    Ok(())
}

/// Store revision entries in order, each event replacing the stub of its revision if there is one.
fn store_revisions_one_by_one<'r>(
    conn: &Connection,
    revisions: impl IntoIterator<Item = &'r StoredRevision>,
) -> Result<()> {
    // A stub entry for a revision held as an event only teaches the event its parent.
    let mut event_parent = conn
        .prepare_cached(
            "UPDATE _events SET parent = coalesce(parent, ?5) WHERE tbl = ?1 AND id = ?2 AND gen = ?3 AND hash = ?4",
        )
        .sql()?;
    let mut stub = conn
        .prepare_cached(
            "INSERT INTO _stubs (tbl, id, gen, hash, parent) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (tbl, id, gen, hash) DO UPDATE SET parent = coalesce(parent, excluded.parent)",
        )
        .sql()?;
    // An event for a revision held as a stub takes its place, and its parent when it names none (a
    // probe, then a delete when there is one: cheaper than DELETE … RETURNING, whose results go
    // through a temporary table).
    let mut stubbed =
        conn.prepare_cached("SELECT parent FROM _stubs WHERE tbl = ?1 AND id = ?2 AND gen = ?3 AND hash = ?4").sql()?;
    let mut unstub =
        conn.prepare_cached("DELETE FROM _stubs WHERE tbl = ?1 AND id = ?2 AND gen = ?3 AND hash = ?4").sql()?;
    let mut event = conn.prepare_cached(&EVENT_ROWS[1]).sql()?;
    for r in revisions {
        let (generation, hash) = (r.rev.generation as i64, &r.rev.hash[..]);
        let parent = r.parent.as_ref().map(|p| &p.hash[..]);
        match r.event {
            None => {
                if event_parent.execute(params![r.table, r.id, generation, hash, parent]).sql()? == 0 {
                    stub.execute(params![r.table, r.id, generation, hash, parent]).sql()?;
                }
            }
            Some((seq, chain)) => {
                let key = params![r.table, r.id, generation, hash];
                let stub: Option<Option<Vec<u8>>> = stubbed.query_row(key, |row| row.get(0)).optional().sql()?;
                if stub.is_some() {
                    unstub.execute(key).sql()?;
                }
                // The event's parent is the one its id was verified with (the write set's); the
                // stub's only when the event names none (an ancestry claims, a verified id proves).
                let parent = parent.or(stub.as_ref().and_then(|p| p.as_deref()));
                let digest = r.foreign.as_ref().map(|d| &d.0[..]);
                event
                    .execute(params![
                        seq as i64,
                        r.table,
                        r.id,
                        generation,
                        hash,
                        parent,
                        r.deleted,
                        r.body,
                        &chain.0[..],
                        digest
                    ])
                    .sql()?;
            }
        }
    }
    Ok(())
}

/// An open transaction on the connection: rolled back when dropped uncommitted, wherever that happens
/// (also on the blocking pool, after the request that began it was cancelled).
struct OpenTxn {
    slot: OwnedMutexGuard<Option<Connection>>,
    open: bool,
}

impl OpenTxn {
    fn conn(&self) -> &Connection {
        self.slot.as_ref().expect("a transaction began on an open connection, which it holds")
    }
}

impl Drop for OpenTxn {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn().execute_batch("ROLLBACK");
        }
    }
}

/// A write transaction: holds the connection until commit or drop (drop rolls back). Each step moves
/// the transaction to the blocking pool and back.
struct SqliteWriteTxn {
    txn: Option<OpenTxn>,
    checkpoints: Arc<Checkpointer>,
    /// About how many bytes the applied write sets add to the WAL.
    bytes: u64,
    /// In a bootstrap's staging file, the records it may hold.
    written: Option<Arc<std::sync::Mutex<Written>>>,
}

/// About how many bytes a write set adds to the WAL: its bodies (stored once, with the events) and
/// keys.
fn written_bytes(writes: &WriteSet) -> u64 {
    const KEYS: usize = 160;
    let revisions: usize = writes.revisions.iter().map(|r| KEYS + r.body.as_ref().map_or(0, String::len)).sum();
    (revisions + KEYS * writes.states.len()) as u64
}

impl SqliteWriteTxn {
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut OpenTxn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // Only a step whose future was dropped mid-way leaves no transaction; it was rolled back.
        let mut txn = self.txn.take().ok_or_else(|| Error::unavailable("this write was cancelled and rolled back"))?;
        let (txn, out) = blocking(move || {
            let out = f(&mut txn);
            (txn, out)
        })
        .await?;
        self.txn = Some(txn);
        out
    }
}

#[async_trait]
impl WriteTxn for SqliteWriteTxn {
    async fn head(&mut self) -> Result<Head> {
        self.run(|t| read_head(t.conn())).await
    }
    async fn load_trees(&mut self, mut keys: Vec<RecordKey>) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        if let Some(written) = &self.written {
            // A bootstrap reads the trees only of records its writes may have named: others have none.
            let written = written.lock().unwrap_or_else(|e| e.into_inner());
            keys.retain(|(table, id)| written.may_hold(table, id));
        }
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.run(move |t| trees(t.conn(), &keys, |body, _, _, _| Ok(body))).await
    }
    async fn load_state(&mut self, table: &str, id: &str) -> Result<Option<StoredState>> {
        let (table, id) = (table.to_owned(), id.to_owned());
        self.run(move |t| load_state(t.conn(), &table, &id)).await
    }
    async fn load_local_rev(&mut self, table: &str, id: &str) -> Result<Option<u64>> {
        let (table, id) = (table.to_owned(), id.to_owned());
        self.run(move |t| Ok(local_doc(t.conn(), &table, &id)?.map(|(rev, _)| rev))).await
    }
    async fn live_states_by_table(&mut self) -> Result<Vec<(String, u64)>> {
        self.run(|t| {
            let mut stmt =
                t.conn().prepare("SELECT tbl, count(*) FROM _records WHERE deleted = 0 GROUP BY tbl").sql()?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).sql()?;
            rows.map(|r| r.sql()).collect()
        })
        .await
    }
    async fn apply(&mut self, writes: WriteSet) -> Result<()> {
        self.bytes += written_bytes(&writes);
        if let Some(written) = &self.written {
            // Before the rows are written: a write rolled back leaves only a key that may be held.
            let mut written = written.lock().unwrap_or_else(|e| e.into_inner());
            for r in &writes.revisions {
                written.insert(&r.table, &r.id);
            }
        }
        self.run(move |t| apply(t.conn(), &writes)).await
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.run(|t| {
            t.conn().execute_batch("COMMIT").sql()?;
            t.open = false;
            Ok(())
        })
        .await?;
        // Durable now (the WAL is synced); moving it into the database file is the background's job.
        self.checkpoints.committed(self.bytes);
        Ok(())
    }
}
