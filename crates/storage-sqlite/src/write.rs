//! Writes: a [`WriteTxn`] holding the connection inside `BEGIN IMMEDIATE … COMMIT`, each step run on
//! the blocking pool, and `apply`, which stores a write set row by row with cached statements.

use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{Error, Result};
use outpost_engine::storage::stored::{self, join_revs};
use outpost_engine::storage::{blocking, Head, RecordKey, StoredState, WriteSet, WriteTxn};
use outpost_engine::tree::RevisionTree;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::checkpoint::Checkpointer;
use crate::error::SqlResultExt;
use crate::schema;
use crate::store::{load_state, load_trees, open_in, read_head, STATE_COLUMNS};

/// Begin a write transaction on the connection in `conn`, once no other writer of this process holds
/// it; waits up to the busy timeout for another process's writer.
pub(crate) async fn begin(
    conn: Arc<Mutex<Option<Connection>>>,
    checkpoints: Arc<Checkpointer>,
) -> Result<Box<dyn WriteTxn>> {
    let slot = conn.lock_owned().await;
    let txn = blocking(move || {
        open_in(&slot)?.execute_batch("BEGIN IMMEDIATE").sql()?;
        Ok::<_, Error>(OpenTxn { slot, open: true })
    })
    .await??;
    Ok(Box::new(SqliteWriteTxn { txn: Some(txn), checkpoints, bytes: 0 }))
}

fn apply(conn: &Connection, writes: &WriteSet) -> Result<()> {
    {
        // A stub entry for a revision held as an event only teaches the event its parent.
        let mut event_parent = conn
            .prepare_cached("UPDATE _events SET parent = coalesce(parent, ?4) WHERE tbl = ?1 AND id = ?2 AND rev = ?3")
            .sql()?;
        let mut stub = conn
            .prepare_cached(
                "INSERT INTO _stubs (tbl, id, rev, parent) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tbl, id, rev) DO UPDATE SET parent = coalesce(parent, excluded.parent)",
            )
            .sql()?;
        // An event for a revision held as a stub takes its place, and its parent when it names none.
        // (A probe, then a delete when there is a stub: cheaper than DELETE … RETURNING, whose
        // results go through a temporary table on every event.)
        let mut stubbed =
            conn.prepare_cached("SELECT parent FROM _stubs WHERE tbl = ?1 AND id = ?2 AND rev = ?3").sql()?;
        let mut unstub = conn.prepare_cached("DELETE FROM _stubs WHERE tbl = ?1 AND id = ?2 AND rev = ?3").sql()?;
        let mut event = conn
            .prepare_cached(
                "INSERT INTO _events (seq, tbl, id, rev, parent, deleted, body, chain)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .sql()?;
        for r in &writes.revisions {
            let rev = r.rev.text();
            let parent = r.parent.map(|p| p.text());
            let parent = parent.as_deref();
            match r.event {
                None => {
                    if event_parent.execute(params![r.table, r.id, rev.as_str(), parent]).sql()? == 0 {
                        stub.execute(params![r.table, r.id, rev.as_str(), parent]).sql()?;
                    }
                }
                Some((seq, chain)) => {
                    let key = params![r.table, r.id, rev.as_str()];
                    let stub: Option<Option<String>> = stubbed.query_row(key, |row| row.get(0)).optional().sql()?;
                    if stub.is_some() {
                        unstub.execute(key).sql()?;
                    }
                    let parent = parent.or(stub.as_ref().and_then(|p| p.as_deref()));
                    let row = params![seq as i64, r.table, r.id, rev.as_str(), parent, r.deleted, r.body, &chain.0[..]];
                    event.execute(row).sql()?;
                }
            }
        }
    }
    {
        // The state's body is its winner's (the write set's rule), which the winner's event holds.
        let mut upsert = conn
            .prepare_cached(&format!(
                "INSERT INTO _records ({STATE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted,
                   body = NULL, leaves = excluded.leaves, conflicts = excluded.conflicts,
                   field_conflicts = excluded.field_conflicts, seq = excluded.seq"
            ))
            .sql()?;
        for s in &writes.states {
            let field_conflicts = stored::encode_field_conflicts(&s.field_conflicts);
            upsert
                .execute(params![
                    s.table,
                    s.id,
                    s.rev.text().as_str(),
                    s.deleted,
                    join_revs(&s.leaves),
                    join_revs(&s.conflicts),
                    field_conflicts,
                    s.seq as i64
                ])
                .sql()?;
        }
    }
    if let Some((seq, chain)) = writes.head {
        conn.execute("UPDATE _meta SET value = ?1 WHERE key = 'update_seq'", [seq as i64]).sql()?;
        conn.execute("UPDATE _meta SET value = ?1 WHERE key = 'chain'", [&chain.0[..]]).sql()?;
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
        conn.execute("UPDATE _meta SET value = value + ?1 WHERE key = 'record_count'", [writes.live_records]).sql()?;
    }
    if let Some(p) = writes.resume {
        conn.execute(
            "INSERT INTO _resume (source, source_seq, source_chain) VALUES (?1, ?2, ?3)
             ON CONFLICT (source) DO UPDATE SET source_seq = excluded.source_seq, source_chain = excluded.source_chain",
            params![&p.source.as_bytes()[..], p.source_seq as i64, &p.source_chain.0[..]],
        )
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
    async fn load_trees(&mut self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
        let keys = keys.to_vec();
        self.run(move |t| load_trees(t.conn(), &keys)).await
    }
    async fn load_state(&mut self, table: &str, id: &str) -> Result<Option<StoredState>> {
        let (table, id) = (table.to_owned(), id.to_owned());
        self.run(move |t| load_state(t.conn(), &table, &id)).await
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
