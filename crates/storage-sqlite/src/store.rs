//! [`SqliteStorage`]: the engine's storage trait on one SQLite file, and its reads. One connection
//! behind an async mutex serialises writers (seqs are assigned under it, so they commit gap-free and
//! in order); reads run on read connections of their own (`read.rs`), so they never wait for a
//! writer; writes are in `write.rs`, the file's creation and opening in `lifecycle.rs`.
//!
//! SQLite calls block (reads, fsyncs, `busy_timeout` waits), so every one runs on tokio's blocking
//! pool, never on an async worker: a heavy request cannot stall `/health` or other requests, and a
//! request timeout answers on time while the work it abandoned finishes (or rolls back) in the
//! background with the connection still held.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{ChainHash, Change, Digest, Epoch, Error, KnowledgeRow, Result, ResumePoint, RevId, Uuid};
use outpost_engine::storage::stored;
use outpost_engine::storage::{
    blocking, ChangesRead, FeedFilter, Head, RecordKey, Storage, StoredEvent, StoredRevision, StoredState, WriteTxn,
};
use outpost_engine::tree::RevisionTree;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::Mutex;

use crate::checkpoint::Checkpointer;
use crate::config::Durability;
use crate::error::SqlResultExt;
use crate::read::Readers;
pub(crate) use crate::trees::load_trees;
use crate::trees::{held_revs, improvable_revs, parent_at, rev_at, revs_at, trees};

/// One database in one SQLite file. The connection is taken out (and closed) by [`Storage::close`].
pub struct SqliteStorage {
    pub(crate) name: String,
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    readers: Readers,
    checkpointer: Arc<Checkpointer>,
    /// A bootstrap's staging file that began empty: the records it may hold.
    pub(crate) written: Option<Arc<std::sync::Mutex<crate::staging::Written>>>,
}

/// The connection in `slot`, or NotFound once the database was closed for deletion.
pub(crate) fn open_in(slot: &Option<Connection>) -> Result<&Connection> {
    slot.as_ref().ok_or_else(|| Error::not_found("the database was deleted"))
}

/// `PRAGMA auto_vacuum`'s value for incremental vacuum (files made before it have 0, none).
pub(crate) const INCREMENTAL_VACUUM: i64 = 2;

/// Return up to `pages` free pages (all, for `None`) to the file system, in a file whose `auto_vacuum`
/// is incremental (in any other, nothing).
pub(crate) fn incremental_vacuum(conn: &Connection, pages: Option<i64>) -> Result<()> {
    let sql = match pages {
        Some(n) => format!("PRAGMA incremental_vacuum({n})"),
        None => "PRAGMA incremental_vacuum".to_owned(),
    };
    // Each step of the statement frees one page: run it to its end.
    let mut stmt = conn.prepare(&sql).sql()?;
    let mut rows = stmt.query([]).sql()?;
    while rows.next().sql()?.is_some() {}
    Ok(())
}

fn blob_uuid(bytes: Vec<u8>) -> Result<Uuid> {
    stored::uuid(&bytes)
}

fn blob_chain(bytes: Vec<u8>) -> Result<ChainHash> {
    stored::chain(&bytes)
}

fn blob_digest(bytes: Option<Vec<u8>>) -> Result<Option<Digest>> {
    stored::digest(bytes.as_deref())
}

impl SqliteStorage {
    /// The storage of the open database `name` on `conn`.
    pub(crate) fn new(name: String, path: &Path, conn: Connection, durability: Durability) -> Self {
        let checkpointer = Checkpointer::new(path, durability);
        let readers = Readers::new(path, durability);
        SqliteStorage {
            name,
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(Some(conn))),
            readers,
            checkpointer,
            written: None,
        }
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything uses the connections now: a read or write running (perhaps on the blocking
    /// pool after its request was cancelled) or a write transaction open.
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.conn) > 1
            || self.conn.try_lock().is_err()
            || self.readers.busy()
            || self.checkpointer.busy()
    }

    /// Wait for the background checkpoints to finish, then checkpoint once more: the WAL's frames and
    /// how many of them are in the database file (equal once everything committed is checkpointed).
    pub async fn wal_settled(&self) -> Result<(i64, i64)> {
        self.checkpointer.settled().await
    }

    /// Checkpoint the WAL into the file and truncate it, once the background checkpoints are idle:
    /// what makes a file that shrank (a vacuum) smaller on disk. A reader still on an older snapshot
    /// makes it a partial checkpoint, which a later one finishes.
    pub(crate) async fn truncate_wal(&self) -> Result<()> {
        self.checkpointer.settled().await?;
        self.run(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).sql()).await
    }

    /// How many checkpoints ran in the background (not counting [`SqliteStorage::wal_settled`]'s).
    pub fn background_checkpoints(&self) -> u64 {
        self.checkpointer.runs()
    }

    /// Run the read `f` in one snapshot, on a read connection (never waiting for a writer, but in a
    /// bootstrap's staging file, which has no WAL: there a read waits while a write commits).
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        self.readers.read(f).await
    }

    /// Run `f` on the writer's connection, on the blocking pool, once no writer holds it.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot = self.conn.clone().lock_owned().await;
        blocking(move || f(open_in(&slot)?)).await?
    }

    /// Run a closure on the connection (for tests and tools that inspect the file, e.g. query plans).
    /// Panics on a database closed for deletion.
    pub async fn with_connection<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let slot = self.conn.lock().await;
        f(open_in(&slot).expect("with_connection on a database that was deleted"))
    }
}

pub(crate) fn read_head(conn: &Connection) -> Result<Head> {
    let update_seq: i64 = conn.query_row("SELECT value FROM _meta WHERE key = 'update_seq'", [], |r| r.get(0)).sql()?;
    let chain: Vec<u8> = conn.query_row("SELECT value FROM _meta WHERE key = 'chain'", [], |r| r.get(0)).sql()?;
    let mut stmt = conn.prepare_cached("SELECT uuid, start_seq FROM _epochs ORDER BY position").sql()?;
    let epochs = stmt
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
        .sql()?
        .map(|row| {
            let (uuid, start) = row.sql()?;
            Ok(Epoch { uuid: blob_uuid(uuid)?, start_seq: start as u64 })
        })
        .collect::<Result<Vec<_>>>()?;
    if epochs.is_empty() {
        return Err(Error::corrupt("the database has no epoch"));
    }
    Ok(Head { update_seq: update_seq as u64, chain: blob_chain(chain)?, epochs })
}

/// The changes page query: an index range scan on `_records_seq`, so its cost follows the page size.
pub(crate) fn changes_sql(filter: &str) -> String {
    format!(
        "SELECT seq, tbl, id, gen, hash, deleted, leaves FROM _records WHERE seq > ?1{filter} ORDER BY seq LIMIT ?2"
    )
}

/// Entries after a page, counted up to a cap (?2) so the count costs at most the cap.
pub(crate) fn pending_sql(filter: &str) -> String {
    format!("SELECT count(*) FROM (SELECT 1 FROM _records WHERE seq > ?1{filter} ORDER BY seq LIMIT ?2)")
}

pub(crate) const STATE_COLUMNS: &str = "tbl, id, gen, hash, deleted, body, leaves, conflicts, field_conflicts, seq";

/// The states as read (`r`), each body from its winner's event (`e`) when the state holds none.
const STATES: &str = "SELECT r.tbl, r.id, r.gen, r.hash, r.deleted, coalesce(r.body, e.body), r.leaves, r.conflicts,
       r.field_conflicts, r.seq
     FROM _records r LEFT JOIN _events e ON e.tbl = r.tbl AND e.id = r.id AND e.gen = r.gen AND e.hash = r.hash";

fn state_of(row: &Row<'_>) -> Result<StoredState> {
    let field_conflicts: String = row.get(8).sql()?;
    let (table, id, rev): (String, String, RevId) = (row.get(0).sql()?, row.get(1).sql()?, rev_at(row, 2)?);
    let body = row.get::<_, Option<String>>(5).sql()?.ok_or_else(|| {
        Error::corrupt(format!("record {table}/{id}: neither its state nor its winner {rev} holds a body"))
    })?;
    Ok(StoredState {
        table,
        id,
        deleted: row.get(4).sql()?,
        body,
        leaves: revs_at(row, 6, Some(&rev))?,
        conflicts: revs_at(row, 7, None)?,
        field_conflicts: stored::field_conflicts(&field_conflicts)?,
        seq: row.get::<_, i64>(9).sql()? as u64,
        rev,
    })
}

pub(crate) fn load_state(conn: &Connection, table: &str, id: &str) -> Result<Option<StoredState>> {
    let mut stmt = conn.prepare_cached(&format!("{STATES} WHERE r.tbl = ?1 AND r.id = ?2")).sql()?;
    let mut rows = stmt.query(params![table, id]).sql()?;
    match rows.next().sql()? {
        Some(row) => Ok(Some(state_of(row)?)),
        None => Ok(None),
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>> {
        crate::write::begin(self.conn.clone(), self.checkpointer.clone(), self.written.clone()).await
    }

    async fn close(&self) {
        // The readers first, then the writer under its lock, so after the reads and the write in
        // progress; closing the last connection checkpoints the WAL and syncs, on the blocking pool. The
        // files may be removed once this returns.
        self.readers.close().await;
        let Some(conn) = self.conn.lock().await.take() else { return };
        let checkpointer = self.checkpointer.clone();
        let closed = blocking(move || {
            checkpointer.close();
            conn.close().map_err(|(_, e)| crate::error::map(e))
        })
        .await;
        if let Err(e) | Ok(Err(e)) = closed {
            tracing::warn!(db = %self.name, error = %e, "closing a deleted database's connection");
        }
    }

    async fn head(&self) -> Result<Head> {
        self.read(read_head).await
    }

    async fn size_bytes(&self) -> Result<Option<u64>> {
        // The file and its WAL (the shared-memory index is not data); a WAL checkpointed away and
        // removed counts nothing.
        let file = self.path.clone();
        blocking(move || {
            let mut wal = file.clone().into_os_string();
            wal.push("-wal");
            let mut total = 0;
            for path in [file.clone(), PathBuf::from(wal)] {
                match std::fs::metadata(&path) {
                    Ok(meta) => total += meta.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != file => {}
                    Err(e) => return Err(Error::internal(format!("{}: {e}", path.display()))),
                }
            }
            Ok(Some(total))
        })
        .await?
    }

    async fn reclaim_space(&self) -> Result<()> {
        // Each step is a write transaction of its own that frees at most this many pages, so a
        // writer waits for one step, not for the whole vacuum.
        const STEP: i64 = 2048;
        let mut freed = 0;
        loop {
            let (before, after) = self
                .run(|conn| {
                    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).sql()?;
                    let free = |conn: &Connection| conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0));
                    let before = free(conn).sql()?;
                    if mode != INCREMENTAL_VACUUM || before == 0 {
                        return Ok((before, before));
                    }
                    incremental_vacuum(conn, Some(STEP))?;
                    Ok((before, free(conn).sql()?))
                })
                .await?;
            freed += before - after;
            // Done, or no progress (nothing more SQLite will give back now).
            if after == 0 || after >= before {
                break;
            }
        }
        // The file shrinks when the WAL is checkpointed into it. Only then is the WAL truncated too,
        // which waits for readers: not for a compaction that freed nothing.
        if freed > 0 {
            self.truncate_wal().await?;
        }
        Ok(())
    }

    async fn load_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
        let keys = keys.to_vec();
        self.read(move |conn| load_trees(conn, &keys)).await
    }

    async fn load_stored_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        let keys = keys.to_vec();
        self.read(move |conn| trees(conn, &keys, |body, _, _, _| Ok(body))).await
    }

    async fn held_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        let keys = keys.to_vec();
        self.read(move |conn| held_revs(conn, &keys)).await
    }

    async fn improvable_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        let keys = keys.to_vec();
        self.read(move |conn| improvable_revs(conn, &keys)).await
    }

    async fn load_state(&self, table: &str, id: &str) -> Result<Option<StoredState>> {
        let (table, id) = (table.to_owned(), id.to_owned());
        self.read(move |conn| load_state(conn, &table, &id)).await
    }

    async fn live_count(&self, table: &str) -> Result<u64> {
        let table = table.to_owned();
        self.read(move |conn| {
            // An index range scan of the table's states (the primary key starts with the table).
            conn.prepare_cached("SELECT count(*) FROM _records WHERE tbl = ?1 AND deleted = 0")
                .sql()?
                .query_row([&table], |r| r.get::<_, i64>(0))
                .sql()
                .map(|n| n as u64)
        })
        .await
    }

    async fn local_doc(&self, table: &str, id: &str) -> Result<Option<(u64, String)>> {
        let (table, id) = (table.to_owned(), id.to_owned());
        self.read(move |conn| local_doc(conn, &table, &id)).await
    }

    async fn list_states(
        &self,
        table: &str,
        after: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<StoredState>> {
        let (table, after) = (table.to_owned(), after.unwrap_or("").to_owned());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{STATES} WHERE r.tbl = ?1 AND r.id > ?2 AND (?3 OR r.deleted = 0) ORDER BY r.id LIMIT ?4"
                ))
                .sql()?;
            let mut rows = stmt.query(params![table, after, include_deleted, limit as i64]).sql()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().sql()? {
                out.push(state_of(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn changes(
        &self,
        since: u64,
        limit: usize,
        filter: Option<&FeedFilter>,
        pending_cap: u64,
    ) -> Result<ChangesRead> {
        let filter = filter.cloned();
        // In the read's one transaction: the page, its pending count and update_seq from one snapshot,
        // even while another process writes the file.
        self.read(move |conn| changes_in(conn, since, limit, filter.as_ref(), pending_cap)).await
    }

    async fn chain_at(&self, seq: u64) -> Result<Option<ChainHash>> {
        self.read(move |conn| {
            // The event of that seq, or the superseded one (`StoredRevision::replaces`).
            let chain: Option<Vec<u8>> = conn
                .prepare_cached(
                    "SELECT chain FROM _events WHERE seq = ?1 UNION ALL SELECT chain FROM _superseded WHERE seq = ?1",
                )
                .sql()?
                .query_row([seq as i64], |r| r.get(0))
                .optional()
                .sql()?;
            chain.map(blob_chain).transpose()
        })
        .await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read(move |conn| events(conn, after, limit)).await
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT peer, peer_seq, peer_chain, local_seq, via FROM _knowledge WHERE local_seq <= ?1
                     ORDER BY local_seq, peer, peer_seq",
                )
                .sql()?;
            let mut rows = stmt.query([upto.map_or(i64::MAX, |u| u as i64)]).sql()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().sql()? {
                out.push(KnowledgeRow {
                    peer: blob_uuid(row.get(0).sql()?)?,
                    peer_seq: row.get::<_, i64>(1).sql()? as u64,
                    peer_chain: blob_chain(row.get(2).sql()?)?,
                    local_seq: row.get::<_, i64>(3).sql()? as u64,
                    via: row.get::<_, Option<Vec<u8>>>(4).sql()?.map(blob_uuid).transpose()?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        self.read(move |conn| {
            let row: Option<(i64, Vec<u8>)> = conn
                .query_row(
                    "SELECT source_seq, source_chain FROM _resume WHERE source = ?1",
                    [&source.as_bytes()[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .sql()?;
            row.map(|(seq, chain)| Ok(ResumePoint { source, source_seq: seq as u64, source_chain: blob_chain(chain)? }))
                .transpose()
        })
        .await
    }

    async fn record_count(&self) -> Result<Option<u64>> {
        self.read(|conn| {
            let n: Option<i64> = conn
                .query_row("SELECT value FROM _meta WHERE key = 'record_count'", [], |r| r.get(0))
                .optional()
                .sql()?;
            Ok(n.map(|n| n as u64))
        })
        .await
    }
}

/// A changes page (see [`Storage::changes`]), read in the caller's transaction.
fn changes_in(
    conn: &Connection,
    since: u64,
    limit: usize,
    filter: Option<&FeedFilter>,
    pending_cap: u64,
) -> Result<ChangesRead> {
    // With a filter: the states of its tables, and of its single records.
    let (filter, mut args): (String, Vec<rusqlite::types::Value>) = match filter {
        None => (String::new(), vec![]),
        Some(filter) => {
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut mark = |value: &str| {
                args.push(value.to_owned().into());
                format!("?{}", args.len() + 2)
            };
            let tables: Vec<String> = filter.tables.iter().map(|t| mark(t)).collect();
            let records: Vec<String> =
                filter.records.iter().map(|(t, id)| format!("({}, {})", mark(t), mark(id))).collect();
            let mut any = Vec::new();
            if !tables.is_empty() {
                any.push(format!("tbl IN ({})", tables.join(", ")));
            }
            if !records.is_empty() {
                any.push(format!("(tbl, id) IN (VALUES {})", records.join(", ")));
            }
            if any.is_empty() {
                any.push("0".into());
            }
            (format!(" AND ({})", any.join(" OR ")), args)
        }
    };
    let sql = changes_sql(&filter);
    let mut all_args: Vec<rusqlite::types::Value> = vec![(since as i64).into(), (limit as i64).into()];
    all_args.append(&mut args.clone());
    let mut stmt = conn.prepare_cached(&sql).sql()?;
    let mut rows = stmt.query(rusqlite::params_from_iter(all_args.iter())).sql()?;
    let mut changes = Vec::new();
    while let Some(row) = rows.next().sql()? {
        let rev = rev_at(row, 3)?;
        changes.push(Change {
            seq: row.get::<_, i64>(0).sql()? as u64,
            table: row.get(1).sql()?,
            id: row.get(2).sql()?,
            deleted: row.get(5).sql()?,
            leaves: revs_at(row, 6, Some(&rev))?,
            rev,
        });
    }
    drop(rows);
    let last = changes.last().map_or(since, |c| c.seq);
    let pending_sql = pending_sql(&filter);
    let mut count_args: Vec<rusqlite::types::Value> = vec![(last as i64).into(), (pending_cap as i64).into()];
    count_args.append(&mut args);
    let pending: i64 = conn
        .prepare_cached(&pending_sql)
        .sql()?
        .query_row(rusqlite::params_from_iter(count_args.iter()), |r| r.get(0))
        .sql()?;
    let update_seq = read_head(conn)?.update_seq;
    Ok(ChangesRead { changes, pending: pending as u64, update_seq })
}

/// `table`'s local document `id`: its revision and body.
pub(crate) fn local_doc(conn: &Connection, table: &str, id: &str) -> Result<Option<(u64, String)>> {
    conn.prepare_cached("SELECT rev, body FROM _local WHERE tbl = ?1 AND id = ?2")
        .sql()?
        .query_row(params![table, id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()
        .sql()
}

/// Revision events after a seq: see [`Storage::events`].
fn events(conn: &Connection, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
    let mut out = events_of(conn, "_events", "body", after, limit)?;
    // The superseded events in their places (few, if any: each is a body replaced, SPEC §3).
    let superseded = events_of(conn, "_superseded", "NULL", after, limit)?;
    if !superseded.is_empty() {
        out.extend(superseded);
        out.sort_by_key(|e| e.seq);
        out.truncate(limit);
    }
    Ok(out)
}

/// The events of `table` (`_events`, or `_superseded` whose rows keep no body) after a seq, by its
/// rowid, at most `limit`.
fn events_of(conn: &Connection, table: &str, body: &str, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT seq, chain, tbl, id, gen, hash, parent, deleted, {body}, digest FROM {table} WHERE seq > ?1 \
             ORDER BY seq LIMIT ?2"
        ))
        .sql()?;
    let mut rows = stmt.query(params![after as i64, limit as i64]).sql()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().sql()? {
        let seq = row.get::<_, i64>(0).sql()? as u64;
        let chain = blob_chain(row.get(1).sql()?)?;
        out.push(StoredEvent {
            seq,
            chain,
            revision: StoredRevision {
                table: row.get(2).sql()?,
                id: row.get(3).sql()?,
                rev: rev_at(row, 4)?,
                parent: parent_at(row, 4, 6)?,
                deleted: row.get(7).sql()?,
                body: row.get(8).sql()?,
                event: Some((seq, chain)),
                foreign: blob_digest(row.get(9).sql()?)?,
                replaces: None,
                superseded: false,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_engine::storage::Genesis;
    use rusqlite::{params_from_iter, StatementStatus};

    fn fill(conn: &Connection, from: u64, to: u64) {
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM n WHERE x < ?2)
             INSERT INTO _records (tbl, id, gen, hash, deleted, body, leaves, conflicts, field_conflicts, seq)
             SELECT 't', 'id' || x, 1, zeroblob(16), 0, '{}', NULL, NULL, '[]', x FROM n",
            params![from as i64, to as i64],
        )
        .unwrap();
    }

    /// VM steps one changes page (100 entries after `since`) and its pending count take.
    fn page_cost(conn: &Connection, since: u64) -> (i32, i32, usize) {
        let mut stmt = conn.prepare(&changes_sql("")).unwrap();
        let n = stmt.query_map(params![since as i64, 100], |_| Ok(())).unwrap().count();
        let page = stmt.get_status(StatementStatus::VmStep);
        let mut count = conn.prepare(&pending_sql("")).unwrap();
        let _: i64 = count.query_row(params![since as i64, 1000], |r| r.get(0)).unwrap();
        (page, count.get_status(StatementStatus::VmStep), n)
    }

    #[test]
    fn many_records_revisions_are_read_by_index_searches() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::create(&dir.path().join("k.outpost"), &Genesis::new("k").unwrap()).unwrap();
        let slot = storage.conn.try_lock().unwrap();
        let conn = slot.as_ref().unwrap();
        let all = ("gen, hash, parent, deleted, body, seq", Some("gen, hash, parent, 0, NULL, NULL"));
        for columns in [all, ("gen, hash", Some("gen, hash"))] {
            let sql = crate::trees::revisions_sql(columns, crate::trees::KEYS);
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params_from_iter(std::iter::repeat_n("x", crate::trees::KEYS + 1)), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                plan.iter().any(|p| p.starts_with("SEARCH _events USING") && p.contains("INDEX _events_key")),
                "{plan:?}"
            );
            assert!(plan.iter().any(|p| p.contains("SEARCH _stubs USING PRIMARY KEY")), "{plan:?}");
            assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{plan:?}");
        }
    }

    #[test]
    fn a_changes_page_costs_the_same_on_a_million_records() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::create(&dir.path().join("big.outpost"), &Genesis::new("big").unwrap()).unwrap();
        let slot = storage.conn.try_lock().unwrap();
        let conn = slot.as_ref().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", changes_sql("")))
            .unwrap()
            .query_map(params![0, 100], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("USING INDEX _records_seq")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{plan:?}");

        fill(conn, 1, 10_000);
        let small = page_cost(conn, 5_000);
        fill(conn, 10_001, 1_000_000);
        let big = page_cost(conn, 500_000);
        assert_eq!((small.2, big.2), (100, 100));
        // Same work on 10k and 1M records: the page is an index range scan, the count is capped.
        assert!(big.0 <= small.0 * 3 / 2, "page on 1M: {} VM steps, on 10k: {}", big.0, small.0);
        assert!(big.1 <= small.1 * 3 / 2, "count on 1M: {} VM steps, on 10k: {}", big.1, small.1);
    }
}
