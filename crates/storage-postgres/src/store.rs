//! [`PostgresStorage`]: the engine's storage trait on one PostgreSQL schema.
//!
//! Writers serialise on the database's single `_meta` row (`SELECT … FOR UPDATE` as the first statement
//! of every write transaction, in READ COMMITTED): the engine reads the head and assigns seqs only while
//! holding it, and PostgreSQL makes a commit visible before it releases the transaction's locks, so seq
//! n is visible before the writer of n+1 can even read the head. That is the §5 invariant "seqs are
//! gap-free and become visible in order", for any number of processes sharing the database.
//!
//! Each write set is stored with a few set-based statements (arrays bound as parameters and expanded
//! with `unnest`), whatever its size, and the transaction sends `NOTIFY outpost_changes` so that other
//! processes wake their long-polls (see `notify.rs`). Reads that must be consistent (the changes page,
//! its pending count and update_seq; the head) are single statements, so one snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use outpost_api::{ChainHash, Change, Epoch, Error, KnowledgeRow, Result, ResumePoint, RevId, Uuid};
use outpost_engine::storage::stored::{self, rev as parse_rev};
use outpost_engine::storage::{
    ChangesRead, FeedFilter, Head, RecordKey, Storage, StoredEvent, StoredRevision, StoredState, WriteTxn,
};
use outpost_engine::tree::RevisionTree;
use tokio::sync::watch;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use crate::error;
use crate::schema::{self, CHANGES_CHANNEL};
pub(crate) use crate::trees::load_trees;
use crate::trees::{held_revs, improvable_revs, trees};

/// The SQL of one database, its schema name filled in once.
pub(crate) struct Sql {
    pub(crate) lock: String,
    pub(crate) head: String,
    pub(crate) load_trees: String,
    pub(crate) held_revs: String,
    pub(crate) improvable_revs: String,
    pub(crate) load_state: String,
    pub(crate) list_states: String,
    pub(crate) changes: String,
    pub(crate) changes_filtered: String,
    pub(crate) chain_at: String,
    pub(crate) events: String,
    pub(crate) knowledge: String,
    pub(crate) resume: String,
    pub(crate) record_count: String,
    pub(crate) size: String,
    pub(crate) insert_stubs: String,
    pub(crate) insert_events: String,
    pub(crate) fill_events: String,
    pub(crate) upsert_states: String,
    pub(crate) insert_states: String,
    pub(crate) set_head: String,
    pub(crate) add_live_records: String,
    pub(crate) set_record_count: String,
    pub(crate) live_states_by_table: String,
    pub(crate) upsert_resume: String,
    pub(crate) insert_knowledge: String,
    pub(crate) forget_knowledge: String,
    pub(crate) drop_bodies: String,
    pub(crate) fill_bodies: String,
    pub(crate) local_doc: String,
    pub(crate) supersede: String,
    pub(crate) insert_superseded: String,
    pub(crate) live_count: String,
    pub(crate) upsert_local: String,
    pub(crate) delete_local: String,
    pub(crate) insert_epoch: String,
}

pub(crate) const STATE_COLUMNS: &str = "tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq";

/// The events of a write set, bound as arrays: each row's seq and its revision.
const EVENTS: &str = "SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
    $7::text[], $8::bytea[], $9::bytea[]) AS u(seq, tbl, id, rev, parent, deleted, body, chain, digest)";

/// Insert states bound as arrays (`store_states` in write.rs binds them).
fn insert_states(s: &str) -> String {
    format!(
        "INSERT INTO {s}._records ({STATE_COLUMNS})
         SELECT tbl, id, rev, deleted, body, string_to_array(leaves, ' '), string_to_array(conflicts, ' '),
           field_conflicts, seq
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[], $7::text[],
           $8::text[], $9::int8[]) AS u(tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq)"
    )
}

/// The states as read (`r`), each body from its winner's event (`e`) when the state holds none.
fn states_sql(s: &str) -> String {
    format!(
        "SELECT r.tbl, r.id, r.rev, r.deleted, coalesce(r.body, e.body), r.leaves, r.conflicts, r.field_conflicts, r.seq
         FROM {s}._records r LEFT JOIN {s}._events e ON e.tbl = r.tbl AND e.id = r.id AND e.rev = r.rev"
    )
}

/// The revisions of the records `$1`/`$2` (tables and ids): the `events` columns of their events (`e`)
/// and the `stubs` columns of their stubs (`t`), each row after its table and id. Index searches only.
fn revisions_sql(s: &str, (events, stubs): (&str, &str)) -> String {
    format!(
        "WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(tbl, id))
         SELECT e.tbl, e.id, {events} FROM k JOIN {s}._events e ON e.tbl = k.tbl AND e.id = k.id
         UNION ALL SELECT t.tbl, t.id, {stubs} FROM k JOIN {s}._stubs t ON t.tbl = k.tbl AND t.id = k.id"
    )
}

/// The changes page, the entries pending after it (counted up to a cap) and update_seq, in one
/// statement so in one snapshot. Both scans are index range scans on `_records_seq`: the cost follows
/// the page and the cap, not the database.
fn changes_sql(s: &str, filter: &str) -> String {
    format!(
        "WITH page AS (
            SELECT seq, tbl, id, rev, deleted, leaves FROM {s}._records WHERE seq > $1{filter} ORDER BY seq LIMIT $2),
         tail AS (
            SELECT count(*) AS pending FROM (
              SELECT 1 FROM {s}._records WHERE seq > coalesce((SELECT max(seq) FROM page), $1){filter}
              ORDER BY seq LIMIT $3) t)
         SELECT m.update_seq, tail.pending, page.seq, page.tbl, page.id, page.rev, page.deleted, page.leaves
         FROM {s}._meta m CROSS JOIN tail LEFT JOIN page ON true ORDER BY page.seq"
    )
}

impl Sql {
    fn new(s: &str) -> Sql {
        Sql {
            // One round trip: begin, bound lock waits, and take the database's serialisation point.
            lock: format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '60s';
                 SELECT 1 FROM {s}._meta FOR UPDATE"
            ),
            head: format!(
                "SELECT m.update_seq, m.chain,
                   ARRAY(SELECT uuid FROM {s}._epochs ORDER BY position),
                   ARRAY(SELECT start_seq FROM {s}._epochs ORDER BY position)
                 FROM {s}._meta m"
            ),
            held_revs: revisions_sql(s, ("e.rev", "t.rev")),
            improvable_revs: format!(
                "SELECT e.tbl, e.id, e.rev FROM unnest($1::text[], $2::text[]) AS k(tbl, id)
                 JOIN {s}._events e ON e.tbl = k.tbl AND e.id = k.id
                 WHERE (e.body IS NULL AND NOT e.deleted) OR e.digest IS NOT NULL"
            ),
            load_trees: revisions_sql(
                s,
                (
                    "e.rev, e.parent, e.deleted, e.body, e.seq, e.digest",
                    "t.rev, t.parent, false, NULL::text, NULL::int8, NULL::bytea",
                ),
            ),
            load_state: format!("{} WHERE r.tbl = $1 AND r.id = $2", states_sql(s)),
            list_states: format!(
                "{} WHERE r.tbl = $1 AND r.id > $2 AND ($3 OR NOT r.deleted) ORDER BY r.id LIMIT $4",
                states_sql(s)
            ),
            changes: changes_sql(s, ""),
            changes_filtered: changes_sql(
                s,
                " AND (tbl = ANY($4) OR (tbl, id) IN (SELECT * FROM unnest($5::text[], $6::text[])))",
            ),
            // The event of a seq, or the superseded one (`StoredRevision::replaces`).
            chain_at: format!(
                "SELECT chain FROM {s}._events WHERE seq = $1 UNION ALL SELECT chain FROM {s}._superseded WHERE seq = $1"
            ),
            // The superseded events in their places (a merge of two index scans).
            events: format!(
                "SELECT seq, chain, tbl, id, rev, parent, deleted, body, digest FROM {s}._events WHERE seq > $1
                 UNION ALL SELECT seq, chain, tbl, id, rev, parent, deleted, NULL, digest FROM {s}._superseded
                 WHERE seq > $1 ORDER BY seq LIMIT $2"
            ),
            insert_superseded: format!(
                "INSERT INTO {s}._superseded (seq, tbl, id, rev, parent, deleted, chain, digest)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
                   $7::bytea[], $8::bytea[])"
            ),
            supersede: format!(
                "WITH moved AS (DELETE FROM {s}._events WHERE seq = ANY($1::int8[])
                   RETURNING seq, tbl, id, rev, parent, deleted, chain, digest)
                 INSERT INTO {s}._superseded (seq, tbl, id, rev, parent, deleted, chain, digest) SELECT * FROM moved"
            ),
            knowledge: format!(
                "SELECT peer, peer_seq, peer_chain, local_seq, via FROM {s}._knowledge WHERE local_seq <= $1
                 ORDER BY local_seq, peer, peer_seq"
            ),
            resume: format!("SELECT source_seq, source_chain FROM {s}._resume WHERE source = $1"),
            record_count: format!("SELECT record_count FROM {s}._meta"),
            // Tables with their indexes and TOAST; the views take no space.
            size: "SELECT coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::int8 FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'"
                .to_owned(),
            add_live_records: format!("UPDATE {s}._meta SET record_count = record_count + $1"),
            set_record_count: format!("UPDATE {s}._meta SET record_count = $1"),
            live_states_by_table: format!("SELECT tbl, count(*) FROM {s}._records WHERE NOT deleted GROUP BY tbl"),
            // A stub entry for a revision held as an event only teaches the event its parent; any other
            // is a stub, or teaches the stub held its parent. Both parts see the statement's snapshot.
            insert_stubs: format!(
                "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                   AS u(tbl, id, rev, parent)),
                 taught AS (UPDATE {s}._events e SET parent = u.parent FROM u
                   WHERE e.tbl = u.tbl AND e.id = u.id AND e.rev = u.rev AND e.parent IS NULL
                     AND u.parent IS NOT NULL RETURNING 1)
                 INSERT INTO {s}._stubs AS t (tbl, id, rev, parent)
                 SELECT tbl, id, rev, parent FROM u WHERE NOT EXISTS (
                   SELECT 1 FROM {s}._events e WHERE e.tbl = u.tbl AND e.id = u.id AND e.rev = u.rev)
                 ON CONFLICT (tbl, id, rev) DO UPDATE SET parent = coalesce(t.parent, excluded.parent)"
            ),
            insert_events: format!(
                "INSERT INTO {s}._events (seq, tbl, id, rev, parent, deleted, body, chain, digest) {EVENTS}"
            ),
            // An event for a revision held as a stub takes its place, with the parent the event names
            // (verified with its id); the stub's only when the event names none.
            fill_events: format!(
                "WITH u AS ({EVENTS}),
                 filled AS (DELETE FROM {s}._stubs t USING u WHERE t.tbl = u.tbl AND t.id = u.id AND t.rev = u.rev
                   RETURNING t.tbl, t.id, t.rev, t.parent)
                 INSERT INTO {s}._events (seq, tbl, id, rev, parent, deleted, body, chain, digest)
                 SELECT u.seq, u.tbl, u.id, u.rev, coalesce(u.parent, f.parent), u.deleted, u.body, u.chain, u.digest
                 FROM u LEFT JOIN filled f ON f.tbl = u.tbl AND f.id = u.id AND f.rev = u.rev"
            ),
            upsert_states: format!(
                "{} ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted,
                   body = excluded.body, leaves = excluded.leaves, conflicts = excluded.conflicts,
                   field_conflicts = excluded.field_conflicts, seq = excluded.seq",
                insert_states(s)
            ),
            insert_states: insert_states(s),
            // The notification is delivered at commit, and only if the transaction commits.
            set_head: format!(
                "WITH u AS (UPDATE {s}._meta SET update_seq = $1, chain = $2 RETURNING 1)
                 SELECT pg_notify('{CHANGES_CHANNEL}', $3) FROM u"
            ),
            upsert_resume: format!(
                "INSERT INTO {s}._resume (source, source_seq, source_chain) VALUES ($1, $2, $3)
                 ON CONFLICT (source) DO UPDATE SET source_seq = excluded.source_seq,
                   source_chain = excluded.source_chain"
            ),
            insert_knowledge: format!(
                "INSERT INTO {s}._knowledge (peer, peer_seq, peer_chain, local_seq, via)
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], $4::int8[], $5::uuid[])
                 ON CONFLICT (peer, peer_seq) DO NOTHING"
            ),
            forget_knowledge: format!(
                "DELETE FROM {s}._knowledge k USING unnest($1::uuid[], $2::int8[]) AS f(peer, peer_seq)
                 WHERE k.peer = f.peer AND k.peer_seq = f.peer_seq"
            ),
            drop_bodies: format!("UPDATE {s}._events SET body = NULL WHERE seq = ANY($1::int8[])"),
            fill_bodies: format!(
                "UPDATE {s}._events e SET body = f.body FROM unnest($1::int8[], $2::text[]) AS f(seq, body)
                 WHERE e.seq = f.seq"
            ),
            local_doc: format!("SELECT rev, body FROM {s}._local WHERE tbl = $1 AND id = $2"),
            live_count: format!("SELECT count(*) FROM {s}._records WHERE tbl = $1 AND NOT deleted"),
            upsert_local: format!(
                "INSERT INTO {s}._local (tbl, id, rev, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tbl, id) DO UPDATE SET rev = excluded.rev, body = excluded.body"
            ),
            delete_local: format!("DELETE FROM {s}._local WHERE tbl = $1 AND id = $2"),
            insert_epoch: format!(
                "INSERT INTO {s}._epochs (position, uuid, start_seq)
                 VALUES ((SELECT count(*) FROM {s}._epochs), $1, $2)"
            ),
        }
    }
}
/// What a storage and its write transactions share.
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    pub(crate) target: Arc<str>,
    pub(crate) sql: Sql,
}

impl Inner {
    pub(crate) fn pg(&self, e: tokio_postgres::Error) -> Error {
        error::map(e, &self.target)
    }

    pub(crate) async fn conn(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| error::map_pool(e, &self.target))
    }

    pub(crate) async fn query(&self, client: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.pg(e))?;
        client.query(&stmt, params).await.map_err(|e| self.pg(e))
    }

    pub(crate) async fn execute(&self, client: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.pg(e))?;
        client.execute(&stmt, params).await.map_err(|e| self.pg(e))
    }
}

/// One database in one PostgreSQL schema.
pub struct PostgresStorage {
    inner: Arc<Inner>,
    commits: Option<watch::Receiver<u64>>,
}

/// A column, with a type mismatch reported as corruption rather than a panic.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(|e| Error::corrupt(format!("postgres: unexpected column {i}: {e}")))
}

pub(crate) fn seq_of(v: i64) -> u64 {
    debug_assert!(v >= 0, "seqs are never negative");
    v as u64
}

pub(crate) fn sql_seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_chain(bytes: Vec<u8>) -> Result<ChainHash> {
    stored::chain(&bytes)
}

pub(crate) fn parse_revs(texts: Vec<String>) -> Result<Vec<RevId>> {
    texts.iter().map(|t| parse_rev(t)).collect()
}

fn state_of(row: &Row) -> Result<StoredState> {
    let field_conflicts: String = col(row, 7)?;
    let (table, id, rev): (String, String, &str) = (col(row, 0)?, col(row, 1)?, col(row, 2)?);
    let body = col::<Option<String>>(row, 4)?.ok_or_else(|| {
        Error::corrupt(format!("record {table}/{id}: neither its state nor its winner {rev} holds a body"))
    })?;
    Ok(StoredState {
        table,
        id,
        rev: parse_rev(rev)?,
        deleted: col(row, 3)?,
        body,
        leaves: parse_revs(col(row, 5)?)?,
        conflicts: parse_revs(col(row, 6)?)?,
        field_conflicts: stored::field_conflicts(&field_conflicts)?,
        seq: seq_of(col(row, 8)?),
    })
}

pub(crate) async fn read_head(inner: &Inner, client: &Object) -> Result<Head> {
    let rows = inner.query(client, &inner.sql.head, &[]).await?;
    let row = rows.first().ok_or_else(|| Error::corrupt(format!("database {:?} has no head row", inner.name)))?;
    let uuids: Vec<Uuid> = col(row, 2)?;
    let starts: Vec<i64> = col(row, 3)?;
    if uuids.is_empty() || uuids.len() != starts.len() {
        return Err(Error::corrupt("the database has no epoch"));
    }
    let epochs = uuids.into_iter().zip(starts).map(|(uuid, start)| Epoch { uuid, start_seq: seq_of(start) }).collect();
    Ok(Head { update_seq: seq_of(col(row, 0)?), chain: to_chain(col(row, 1)?)?, epochs })
}

/// `table`'s local document `id`: its revision and body.
pub(crate) async fn local_doc(inner: &Inner, client: &Object, table: &str, id: &str) -> Result<Option<(u64, String)>> {
    let rows = inner.query(client, &inner.sql.local_doc, &[&table, &id]).await?;
    rows.first().map(|r| Ok((seq_of(col(r, 0)?), col(r, 1)?))).transpose()
}

pub(crate) async fn load_state(inner: &Inner, client: &Object, table: &str, id: &str) -> Result<Option<StoredState>> {
    inner.query(client, &inner.sql.load_state, &[&table, &id]).await?.first().map(state_of).transpose()
}

impl PostgresStorage {
    /// The storage of database `name` (already created and migrated) over `pool`; `commits` carries the
    /// update_seqs other processes commit, when a listener runs.
    pub(crate) fn new(name: &str, pool: Pool, target: Arc<str>, commits: Option<watch::Receiver<u64>>) -> Result<Self> {
        let schema = schema::schema_of(name)?;
        let inner = Inner { name: name.to_owned(), pool, target, sql: Sql::new(&schema) };
        Ok(PostgresStorage { inner: Arc::new(inner), commits })
    }

    /// The schema holding this database, quoted.
    pub fn schema(&self) -> String {
        schema::ident(&self.inner.name)
    }

    /// A pooled connection (for tests and tools that inspect the schema, e.g. query plans).
    pub async fn connection(&self) -> Result<Object> {
        self.inner.conn().await
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>> {
        let client = self.inner.conn().await?;
        crate::write::begin(self.inner.clone(), client).await
    }

    async fn head(&self) -> Result<Head> {
        read_head(&self.inner, &self.inner.conn().await?).await
    }

    async fn load_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
        load_trees(&self.inner, &self.inner.conn().await?, keys).await
    }

    async fn load_stored_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        // Bodies are stored as wire JSON text: sent on as read, never parsed and encoded again.
        trees(&self.inner, &self.inner.conn().await?, keys, |text, _, _| Ok(text.to_owned())).await
    }

    async fn held_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        held_revs(&self.inner, &self.inner.conn().await?, keys).await
    }

    async fn improvable_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        improvable_revs(&self.inner, &self.inner.conn().await?, keys).await
    }

    async fn load_state(&self, table: &str, id: &str) -> Result<Option<StoredState>> {
        load_state(&self.inner, &self.inner.conn().await?, table, id).await
    }

    async fn live_count(&self, table: &str) -> Result<u64> {
        let client = self.inner.conn().await?;
        let rows = self.inner.query(&client, &self.inner.sql.live_count, &[&table]).await?;
        rows.first().map_or(Ok(0), |r| Ok(seq_of(col(r, 0)?)))
    }

    async fn local_doc(&self, table: &str, id: &str) -> Result<Option<(u64, String)>> {
        local_doc(&self.inner, &self.inner.conn().await?, table, id).await
    }

    async fn list_states(
        &self,
        table: &str,
        after: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<StoredState>> {
        let client = self.inner.conn().await?;
        let params: [&(dyn ToSql + Sync); 4] = [&table, &after.unwrap_or(""), &include_deleted, &(limit as i64)];
        self.inner.query(&client, &self.inner.sql.list_states, &params).await?.iter().map(state_of).collect()
    }

    async fn changes(
        &self,
        since: u64,
        limit: usize,
        filter: Option<&FeedFilter>,
        pending_cap: u64,
    ) -> Result<ChangesRead> {
        let client = self.inner.conn().await?;
        let (since, limit, cap) = (sql_seq(since), limit as i64, sql_seq(pending_cap));
        let rows = match filter {
            None => self.inner.query(&client, &self.inner.sql.changes, &[&since, &limit, &cap]).await?,
            Some(filter) => {
                let record_tables: Vec<&str> = filter.records.iter().map(|k| k.0.as_str()).collect();
                let record_ids: Vec<&str> = filter.records.iter().map(|k| k.1.as_str()).collect();
                let params: [&(dyn ToSql + Sync); 6] =
                    [&since, &limit, &cap, &filter.tables, &record_tables, &record_ids];
                self.inner.query(&client, &self.inner.sql.changes_filtered, &params).await?
            }
        };
        let first =
            rows.first().ok_or_else(|| Error::corrupt(format!("database {:?} has no head row", self.name())))?;
        let update_seq = seq_of(col(first, 0)?);
        let pending = seq_of(col(first, 1)?);
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(seq) = col::<Option<i64>>(row, 2)? else { continue };
            changes.push(Change {
                seq: seq_of(seq),
                table: col(row, 3)?,
                id: col(row, 4)?,
                rev: parse_rev(col(row, 5)?)?,
                deleted: col(row, 6)?,
                leaves: parse_revs(col(row, 7)?)?,
            });
        }
        Ok(ChangesRead { changes, pending, update_seq })
    }

    async fn chain_at(&self, seq: u64) -> Result<Option<ChainHash>> {
        let client = self.inner.conn().await?;
        let rows = self.inner.query(&client, &self.inner.sql.chain_at, &[&sql_seq(seq)]).await?;
        rows.first().map(|r| to_chain(col(r, 0)?)).transpose()
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let client = self.inner.conn().await?;
        let rows = self.inner.query(&client, &self.inner.sql.events, &[&sql_seq(after), &(limit as i64)]).await?;
        rows.iter()
            .map(|row| {
                let seq = seq_of(col(row, 0)?);
                let chain = to_chain(col(row, 1)?)?;
                Ok(StoredEvent {
                    seq,
                    chain,
                    revision: StoredRevision {
                        table: col(row, 2)?,
                        id: col(row, 3)?,
                        rev: parse_rev(col(row, 4)?)?,
                        parent: col::<Option<&str>>(row, 5)?.map(parse_rev).transpose()?,
                        deleted: col(row, 6)?,
                        body: col(row, 7)?,
                        event: Some((seq, chain)),
                        foreign: stored::digest(col::<Option<&[u8]>>(row, 8)?)?,
                        replaces: None,
                        superseded: false,
                    },
                })
            })
            .collect()
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        let client = self.inner.conn().await?;
        let upto = upto.map_or(i64::MAX, sql_seq);
        let rows = self.inner.query(&client, &self.inner.sql.knowledge, &[&upto]).await?;
        rows.iter()
            .map(|row| {
                Ok(KnowledgeRow {
                    peer: col(row, 0)?,
                    peer_seq: seq_of(col(row, 1)?),
                    peer_chain: to_chain(col(row, 2)?)?,
                    local_seq: seq_of(col(row, 3)?),
                    via: col(row, 4)?,
                })
            })
            .collect()
    }

    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        let client = self.inner.conn().await?;
        let rows = self.inner.query(&client, &self.inner.sql.resume, &[&source]).await?;
        rows.first()
            .map(|r| Ok(ResumePoint { source, source_seq: seq_of(col(r, 0)?), source_chain: to_chain(col(r, 1)?)? }))
            .transpose()
    }

    async fn record_count(&self) -> Result<Option<u64>> {
        let client = self.inner.conn().await?;
        let rows = self.inner.query(&client, &self.inner.sql.record_count, &[]).await?;
        let row = rows.first().ok_or_else(|| Error::corrupt(format!("database {:?} has no head row", self.name())))?;
        Ok(col::<Option<i64>>(row, 0)?.map(seq_of))
    }

    async fn size_bytes(&self) -> Result<Option<u64>> {
        let client = self.inner.conn().await?;
        let rows = self.inner.query(&client, &self.inner.sql.size, &[&self.inner.name]).await?;
        let row = rows.first().ok_or_else(|| Error::internal("the size query gave no row"))?;
        Ok(Some(seq_of(col(row, 0)?)))
    }

    fn external_commits(&self) -> Option<watch::Receiver<u64>> {
        self.commits.clone()
    }
}

#[cfg(test)]
mod tests {
    //! The §5 cost rule on a real PostgreSQL (`OUTPOST_TEST_POSTGRES`; skipped when unset, failing under
    //! `CI=true`): a changes page and `chain_at` are index scans that read the page, not the database.

    use outpost_api::{Databases, Limits};

    use crate::PostgresDatabases;

    fn test_url() -> Option<String> {
        match std::env::var("OUTPOST_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "OUTPOST_TEST_POSTGRES is unset under CI=true"
                );
                eprintln!("skipped: OUTPOST_TEST_POSTGRES is unset (cargo xtask pg start)");
                None
            }
        }
    }

    /// Every plan node, depth first.
    fn nodes(plan: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        out.push(plan.clone());
        for child in plan["Plans"].as_array().into_iter().flatten() {
            nodes(child, out);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changes_page_and_a_chain_lookup_read_only_what_they_return() {
        let Some(url) = test_url() else { return };
        let dbs = PostgresDatabases::connect_url(&url, Limits::default()).await.unwrap();
        let name = format!("plans-{}", std::process::id());
        let _ = dbs.delete(&name).await;
        let db = dbs.create_postgres(&name).await.unwrap();
        let storage = db.storage();
        let s = storage.schema();
        let client = storage.connection().await.unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO {s}._records (tbl, id, rev, deleted, body, leaves, conflicts, field_conflicts, seq)
                 SELECT 't', 'id' || x, '1-00000000000000000000000000000000', false, '{{}}', '{{}}', '{{}}', '[]', x
                 FROM generate_series(1, 200000) x;
                 INSERT INTO {s}._events (tbl, id, rev, deleted, body, seq, chain)
                 SELECT 't', 'id' || x, '1-00000000000000000000000000000000', false, '{{}}', x, '\\x00'
                 FROM generate_series(1, 200000) x;
                 ANALYZE {s}._records; ANALYZE {s}._events;"
            ))
            .await
            .unwrap();
        let explain = |sql: String| format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
        let sql = super::Sql::new(&s);
        let tables = vec!["t".to_owned()];
        let def_tables = vec![outpost_api::names::TABLES_TABLE.to_owned()];
        type Params<'a> = Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>;
        let cases: [(&str, String, Params<'_>, &str, f64); 3] = [
            ("changes", explain(sql.changes), vec![&100_000_i64, &100_i64, &1000_i64], "_records_seq", 1100.0),
            (
                "filtered changes",
                explain(sql.changes_filtered),
                vec![&100_000_i64, &100_i64, &1000_i64, &tables, &def_tables, &tables],
                "_records_seq",
                1100.0,
            ),
            ("chain_at", explain(sql.chain_at), vec![&150_000_i64], "_events_pkey", 1.0),
        ];
        for (what, sql, params, index, most) in cases {
            let rows = client.query(&sql, &params).await.unwrap();
            let plan: serde_json::Value = rows[0].get(0);
            let mut all = Vec::new();
            nodes(&plan[0]["Plan"], &mut all);
            let scans: Vec<_> = all.iter().filter(|n| n["Node Type"].as_str().unwrap_or("").contains("Scan")).collect();
            let big = |n: &&&serde_json::Value| n["Relation Name"] == "_records" || n["Relation Name"] == "_events";
            let full = scans.iter().filter(big).any(|n| n["Node Type"] == "Seq Scan");
            assert!(!full, "{what}: a sequential scan of a big table in {plan:#}");
            assert!(scans.iter().any(|n| n["Index Name"] == index), "{what}: no scan of {index} in {plan:#}");
            let read: f64 = scans
                .iter()
                .filter(big)
                .map(|n| n["Actual Rows"].as_f64().unwrap_or(0.0) * n["Actual Loops"].as_f64().unwrap_or(1.0))
                .sum();
            assert!(read <= most, "{what}: read {read} rows of 200000 (at most {most} expected): {plan:#}");
        }
        dbs.delete(&name).await.unwrap();
    }
}
