//! [`SqliteStorage`]: the engine's storage trait on one SQLite file. One connection behind an async
//! mutex serialises writers (seqs are assigned under it, so they commit gap-free and in order).
//!
//! SQLite calls block (reads, fsyncs, `busy_timeout` waits), so every one runs on tokio's blocking
//! pool, never on an async worker: a heavy request cannot stall `/health` or other requests, and a
//! request timeout answers on time while the work it abandoned finishes (or rolls back) in the
//! background with the connection still held.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{Attributes, ChainHash, Change, Epoch, Error, KnowledgeRow, Result, ResumePoint, RevId, Uuid};
use outpost_engine::storage::stored::{self, join_revs, rev as parse_rev, rev_list as parse_revs};
use outpost_engine::storage::{
    blocking, ChangesRead, Head, RecordKey, Storage, StoredEvent, StoredRevision, StoredState, WriteSet, WriteTxn,
};
use outpost_engine::tree::{RevisionNode, RevisionTree};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::SqlResultExt;
use crate::schema;

/// One database in one SQLite file. The connection is taken out (and closed) by [`Storage::close`].
pub struct SqliteStorage {
    name: String,
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

/// The connection in `slot`, or NotFound once the database was closed for deletion.
fn open_in(slot: &Option<Connection>) -> Result<&Connection> {
    slot.as_ref().ok_or_else(|| Error::not_found("the database was deleted"))
}

fn open_connection(path: &Path, create: bool) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).sql()?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).sql()?;
    // WAL: readers never block the writer; FULL: a committed write survives a crash or power loss.
    conn.pragma_update(None, "journal_mode", "WAL").sql()?;
    conn.pragma_update(None, "synchronous", "FULL").sql()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Make the empty file a database will be written into, readable by its owner only (SPEC §14: database
/// files 0600; SQLite gives its `-wal` and `-shm` files the same mode). AlreadyExists if it is there.
pub(crate) fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::already_exists(format!("{} exists", path.display())),
        _ => Error::unavailable(format!("cannot create {}: {e}", path.display())),
    })
}

pub(crate) fn remove_with_wal(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn blob_uuid(bytes: Vec<u8>) -> Result<Uuid> {
    Uuid::from_slice(&bytes).map_err(|_| Error::corrupt("a stored uuid is not 16 bytes"))
}

fn blob_chain(bytes: Vec<u8>) -> Result<ChainHash> {
    stored::chain(&bytes)
}

impl SqliteStorage {
    /// Create a new database file. AlreadyExists when the file exists.
    pub fn create(path: &Path, name: &str) -> Result<Self> {
        outpost_api::names::validate_db_name(name)?;
        if path.exists() {
            return Err(Error::already_exists(format!("{} exists", path.display())));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            return Err(Error::not_found(format!("directory {} does not exist", dir.display())));
        }
        // Built under a staging name and moved into place, so a crash never leaves a half-made file
        // where the database should be.
        let mut staging = path.file_name().unwrap_or_default().to_os_string();
        staging.push(".creating");
        let staging = path.with_file_name(staging);
        remove_with_wal(&staging);
        let built = Self::build(&staging, name).and_then(|()| {
            std::fs::rename(&staging, path)
                .map_err(|e| Error::unavailable(format!("cannot move the new database to {}: {e}", path.display())))
        });
        if let Err(e) = built {
            remove_with_wal(&staging);
            return Err(e);
        }
        Self::open(path)
    }

    /// Write a new database's schema and identity to `path`, and close it.
    fn build(path: &Path, name: &str) -> Result<()> {
        create_private(path)?;
        let mut conn = open_connection(path, true)?;
        schema::migrate(&mut conn)?;
        let uuid = Uuid::new_v4();
        let genesis = outpost_engine::hash::genesis_chain(uuid);
        let tx = conn.transaction().sql()?;
        tx.execute("INSERT INTO _meta (key, value) VALUES ('name', ?1)", [name]).sql()?;
        tx.execute("INSERT INTO _meta (key, value) VALUES ('update_seq', 0)", []).sql()?;
        tx.execute("INSERT INTO _meta (key, value) VALUES ('chain', ?1)", [&genesis.0[..]]).sql()?;
        tx.execute("INSERT INTO _epochs (position, uuid, start_seq) VALUES (0, ?1, 1)", [&uuid.as_bytes()[..]])
            .sql()?;
        tx.commit().sql()?;
        // Closing the only connection checkpoints the WAL into the file and removes it.
        conn.close().map_err(|(_, e)| crate::error::map(e))?;
        Ok(())
    }

    /// Open an existing database file. NotFound when there is none; a clear error for a file that is
    /// not an Outpost database or has a newer format.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::invalid(format!("{} is a directory, not a database file", path.display())));
        }
        if !path.is_file() {
            return Err(Error::not_found(format!("no database file at {}", path.display())));
        }
        let mut conn = open_connection(path, false)?;
        let not_outpost = || Error::invalid(format!("{} is not an Outpost database", path.display()));
        let version = schema::version(&conn).map_err(|_| not_outpost())?;
        if version == 0 {
            return Err(not_outpost());
        }
        schema::migrate(&mut conn)?;
        let name: String = conn
            .query_row("SELECT value FROM _meta WHERE key = 'name'", [], |r| r.get(0))
            .optional()
            .sql()?
            .ok_or_else(not_outpost)?;
        Ok(SqliteStorage { name, path: path.to_owned(), conn: Arc::new(Mutex::new(Some(conn))) })
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything uses the connection now: a read or write running (perhaps on the blocking
    /// pool after its request was cancelled) or a write transaction open.
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.conn) > 1 || self.conn.try_lock().is_err()
    }

    /// Run `f` on the connection, on the blocking pool, once no writer holds it.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let slot = self.conn.clone().lock_owned().await;
        blocking(move || f(open_in(&slot)?)).await?
    }

    /// Write a consistent copy of the database to the new file `to` (SQLite's `VACUUM INTO`: one read
    /// transaction, so writers may go on; the copy is compact and self-contained, without a WAL).
    pub async fn backup_to(&self, to: &Path) -> Result<()> {
        if to.exists() {
            return Err(Error::already_exists(format!("{} exists; a backup never overwrites a file", to.display())));
        }
        let target = to.to_str().ok_or_else(|| Error::invalid(format!("{} is not a UTF-8 path", to.display())))?;
        let (to, target) = (to.to_owned(), target.to_owned());
        self.run(move |conn| {
            // VACUUM INTO writes into an empty file as into a new one, keeping its mode.
            create_private(&to)?;
            if let Err(e) = conn.execute("VACUUM INTO ?1", [target]).sql() {
                let _ = std::fs::remove_file(&to);
                return Err(e);
            }
            Ok(())
        })
        .await
    }

    /// Set the name recorded in the file (a restored copy takes the name it is restored under).
    pub async fn set_name(&mut self, name: &str) -> Result<()> {
        outpost_api::names::validate_db_name(name)?;
        let new = name.to_owned();
        self.run(move |conn| conn.execute("UPDATE _meta SET value = ?1 WHERE key = 'name'", [new]).sql()).await?;
        self.name = name.to_owned();
        Ok(())
    }

    /// Run a closure on the connection (for tests and tools that inspect the file, e.g. query plans).
    /// Panics on a database closed for deletion.
    pub async fn with_connection<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let slot = self.conn.lock().await;
        f(open_in(&slot).expect("with_connection on a database that was deleted"))
    }
}

fn read_head(conn: &Connection) -> Result<Head> {
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

fn load_trees(conn: &Connection, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
    let mut stmt = conn
        .prepare_cached("SELECT rev, parent, deleted, body, seq FROM _revisions WHERE tbl = ?1 AND id = ?2")
        .sql()?;
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let mut tree = RevisionTree::new();
        let mut rows = stmt.query(params![key.0, key.1]).sql()?;
        while let Some(row) = rows.next().sql()? {
            let rev = parse_rev(&row.get::<_, String>(0).sql()?)?;
            let parent = row.get::<_, Option<String>>(1).sql()?.map(|p| parse_rev(&p)).transpose()?;
            let body = row
                .get::<_, Option<String>>(3)
                .sql()?
                .map(|b| {
                    serde_json::from_str::<Attributes>(&b)
                        .map_err(|e| Error::corrupt(format!("stored body of {}/{} {rev}: {e}", key.0, key.1)))
                })
                .transpose()?;
            let node = RevisionNode {
                parent,
                deleted: row.get(2).sql()?,
                body,
                seq: row.get::<_, Option<i64>>(4).sql()?.map(|s| s as u64),
            };
            tree.insert(rev, node);
        }
        out.insert(key.clone(), tree);
    }
    Ok(out)
}

/// The revision ids of each record, read from the `_revisions_key` index alone.
fn held_revs(conn: &Connection, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
    let mut stmt = conn.prepare_cached("SELECT rev FROM _revisions WHERE tbl = ?1 AND id = ?2").sql()?;
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let mut revs = HashSet::new();
        let mut rows = stmt.query(params![key.0, key.1]).sql()?;
        while let Some(row) = rows.next().sql()? {
            revs.insert(parse_rev(&row.get::<_, String>(0).sql()?)?);
        }
        out.insert(key.clone(), revs);
    }
    Ok(out)
}

/// The changes page query: an index range scan on `_records_seq`, so its cost follows the page size.
pub(crate) fn changes_sql(filter: &str) -> String {
    format!("SELECT seq, tbl, id, rev, deleted, leaves FROM _records WHERE seq > ?1{filter} ORDER BY seq LIMIT ?2")
}

/// Entries after a page, counted up to a cap (?2) so the count costs at most the cap.
pub(crate) fn pending_sql(filter: &str) -> String {
    format!("SELECT count(*) FROM (SELECT 1 FROM _records WHERE seq > ?1{filter} ORDER BY seq LIMIT ?2)")
}

const STATE_COLUMNS: &str = "tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq";

fn state_of(row: &Row<'_>) -> Result<StoredState> {
    let field_conflicts: String = row.get(7).sql()?;
    Ok(StoredState {
        table: row.get(0).sql()?,
        id: row.get(1).sql()?,
        rev: parse_rev(&row.get::<_, String>(2).sql()?)?,
        deleted: row.get(3).sql()?,
        body: row.get(4).sql()?,
        leaves: parse_revs(&row.get::<_, String>(5).sql()?)?,
        conflicts: parse_revs(&row.get::<_, String>(6).sql()?)?,
        field_conflicts: serde_json::from_str(&field_conflicts).map_err(|e| Error::corrupt(e.to_string()))?,
        seq: row.get::<_, i64>(8).sql()? as u64,
    })
}

fn load_state(conn: &Connection, table: &str, id: &str) -> Result<Option<StoredState>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {STATE_COLUMNS} FROM _records WHERE tbl = ?1 AND id = ?2")).sql()?;
    let mut rows = stmt.query(params![table, id]).sql()?;
    match rows.next().sql()? {
        Some(row) => Ok(Some(state_of(row)?)),
        None => Ok(None),
    }
}

fn apply(conn: &Connection, writes: &WriteSet) -> Result<()> {
    {
        let mut stub = conn
            .prepare_cached(
                "INSERT INTO _revisions (tbl, id, rev, parent, deleted, body, seq, chain)
                 VALUES (?1, ?2, ?3, ?4, 0, NULL, NULL, NULL)
                 ON CONFLICT (tbl, id, rev) DO UPDATE SET parent = coalesce(parent, excluded.parent)",
            )
            .sql()?;
        let mut event = conn
            .prepare_cached(
                "INSERT INTO _revisions (tbl, id, rev, parent, deleted, body, seq, chain)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tbl, id, rev) DO UPDATE SET parent = coalesce(parent, excluded.parent),
                   deleted = excluded.deleted, body = excluded.body, seq = excluded.seq, chain = excluded.chain",
            )
            .sql()?;
        for r in &writes.revisions {
            let parent = r.parent.map(|p| p.to_string());
            match r.event {
                None => stub.execute(params![r.table, r.id, r.rev.to_string(), parent]).sql()?,
                Some((seq, chain)) => event
                    .execute(params![
                        r.table,
                        r.id,
                        r.rev.to_string(),
                        parent,
                        r.deleted,
                        r.body,
                        seq as i64,
                        &chain.0[..]
                    ])
                    .sql()?,
            };
        }
    }
    {
        let mut upsert = conn
            .prepare_cached(&format!(
                "INSERT INTO _records ({STATE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted,
                   body = excluded.body, leaves = excluded.leaves, conflicts = excluded.conflicts,
                   field_conflicts = excluded.field_conflicts, seq = excluded.seq"
            ))
            .sql()?;
        for s in &writes.states {
            let field_conflicts =
                serde_json::to_string(&s.field_conflicts).map_err(|e| Error::internal(e.to_string()))?;
            upsert
                .execute(params![
                    s.table,
                    s.id,
                    s.rev.to_string(),
                    s.deleted,
                    s.body,
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
    async fn apply(&mut self, writes: WriteSet) -> Result<()> {
        self.run(move |t| apply(t.conn(), &writes)).await
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.run(|t| {
            t.conn().execute_batch("COMMIT").sql()?;
            t.open = false;
            Ok(())
        })
        .await
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
        let slot = self.conn.clone().lock_owned().await;
        let txn = blocking(move || {
            // Waits up to the busy timeout for another process's writer.
            open_in(&slot)?.execute_batch("BEGIN IMMEDIATE").sql()?;
            Ok::<_, Error>(OpenTxn { slot, open: true })
        })
        .await??;
        Ok(Box::new(SqliteWriteTxn { txn: Some(txn) }))
    }

    async fn close(&self) {
        // Under the connection's lock, so after the write or read in progress; closing checkpoints the
        // WAL and syncs, on the blocking pool. The files may be removed once this returns.
        let Some(conn) = self.conn.lock().await.take() else { return };
        let closed = blocking(move || conn.close().map_err(|(_, e)| crate::error::map(e))).await;
        if let Err(e) | Ok(Err(e)) = closed {
            tracing::warn!(db = %self.name, error = %e, "closing a deleted database's connection");
        }
    }

    async fn head(&self) -> Result<Head> {
        self.run(read_head).await
    }

    async fn load_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
        let keys = keys.to_vec();
        self.run(move |conn| load_trees(conn, &keys)).await
    }

    async fn held_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        let keys = keys.to_vec();
        self.run(move |conn| held_revs(conn, &keys)).await
    }

    async fn load_state(&self, table: &str, id: &str) -> Result<Option<StoredState>> {
        let (table, id) = (table.to_owned(), id.to_owned());
        self.run(move |conn| load_state(conn, &table, &id)).await
    }

    async fn list_states(
        &self,
        table: &str,
        after: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<StoredState>> {
        let (table, after) = (table.to_owned(), after.unwrap_or("").to_owned());
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {STATE_COLUMNS} FROM _records WHERE tbl = ?1 AND id > ?2 AND (?3 OR deleted = 0)
                     ORDER BY id LIMIT ?4"
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
        tables: Option<&[String]>,
        pending_cap: u64,
    ) -> Result<ChangesRead> {
        let tables = tables.map(<[String]>::to_vec);
        self.run(move |conn| changes(conn, since, limit, tables.as_deref(), pending_cap)).await
    }

    async fn chain_at(&self, seq: u64) -> Result<Option<ChainHash>> {
        self.run(move |conn| {
            let chain: Option<Vec<u8>> = conn
                .prepare_cached("SELECT chain FROM _revisions WHERE seq = ?1")
                .sql()?
                .query_row([seq as i64], |r| r.get(0))
                .optional()
                .sql()?;
            chain.map(blob_chain).transpose()
        })
        .await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.run(move |conn| events(conn, after, limit)).await
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        self.run(move |conn| {
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
        self.run(move |conn| {
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

    async fn record_count(&self) -> Result<u64> {
        self.run(|conn| {
            let n: i64 =
                conn.query_row("SELECT value FROM _meta WHERE key = 'record_count'", [], |r| r.get(0)).sql()?;
            Ok(n as u64)
        })
        .await
    }
}

/// A changes page: see [`Storage::changes`].
fn changes(
    conn: &Connection,
    since: u64,
    limit: usize,
    tables: Option<&[String]>,
    pending_cap: u64,
) -> Result<ChangesRead> {
    // With a filter: the named tables' records, and their definitions in `_tables`.
    let (filter, mut args): (String, Vec<rusqlite::types::Value>) = match tables {
        None => (String::new(), vec![]),
        Some(tables) => {
            let marks = (0..tables.len()).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(", ");
            let filter = format!(" AND (tbl IN ({marks}) OR (tbl = '_tables' AND id IN ({marks})))");
            (filter, tables.iter().map(|t| t.clone().into()).collect())
        }
    };
    let sql = changes_sql(&filter);
    let mut all_args: Vec<rusqlite::types::Value> = vec![(since as i64).into(), (limit as i64).into()];
    all_args.append(&mut args.clone());
    let mut stmt = conn.prepare_cached(&sql).sql()?;
    let mut rows = stmt.query(rusqlite::params_from_iter(all_args.iter())).sql()?;
    let mut changes = Vec::new();
    while let Some(row) = rows.next().sql()? {
        changes.push(Change {
            seq: row.get::<_, i64>(0).sql()? as u64,
            table: row.get(1).sql()?,
            id: row.get(2).sql()?,
            rev: parse_rev(&row.get::<_, String>(3).sql()?)?,
            deleted: row.get(4).sql()?,
            leaves: parse_revs(&row.get::<_, String>(5).sql()?)?,
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

/// Revision events after a seq: see [`Storage::events`].
fn events(conn: &Connection, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, chain, tbl, id, rev, parent, deleted, body FROM _revisions
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
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
                rev: parse_rev(&row.get::<_, String>(4).sql()?)?,
                parent: row.get::<_, Option<String>>(5).sql()?.map(|p| parse_rev(&p)).transpose()?,
                deleted: row.get(6).sql()?,
                body: row.get(7).sql()?,
                event: Some((seq, chain)),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    fn fill(conn: &Connection, from: u64, to: u64) {
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM n WHERE x < ?2)
             INSERT INTO _records (tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq)
             SELECT 't', 'id' || x, '1-00000000000000000000000000000000', 0, '{}', '', '', '[]', x FROM n",
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
    fn a_changes_page_costs_the_same_on_a_million_records() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::create(&dir.path().join("big.outpost"), "big").unwrap();
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
