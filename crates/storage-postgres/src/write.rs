//! Writes: a [`WriteTxn`] on a pooled connection inside `BEGIN … COMMIT`, holding the database's
//! `_meta` row lock, and `apply`, which stores a write set with a few `unnest`-batched statements
//! whatever its size.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;
use outpost_api::{Error, Result, Uuid};
use outpost_engine::storage::stored::{self, join_revs};
use outpost_engine::storage::{Head, RecordKey, StoredRevision, StoredState, WriteSet, WriteTxn};
use outpost_engine::tree::RevisionTree;
use std::collections::HashMap;

use crate::schema;
use crate::store::{col, load_state, local_doc, read_head, seq_of, sql_seq, Inner};
use crate::trees::trees;

/// Begin a write transaction on `client`: the database's serialisation point is taken first.
pub(crate) async fn begin(inner: Arc<Inner>, client: Object) -> Result<Box<dyn WriteTxn>> {
    let txn = PgWriteTxn { inner, client: Some(client) };
    // On error the transaction is dropped, which rolls back whatever part of the batch ran.
    txn.client()?.batch_execute(&txn.inner.sql.lock).await.map_err(|e| txn.inner.pg(e))?;
    Ok(Box::new(txn))
}

async fn apply(inner: &Inner, client: &Object, writes: &WriteSet) -> Result<()> {
    let sql = &inner.sql;
    let stubs: Vec<&StoredRevision> = writes.revisions.iter().filter(|r| r.event.is_none()).collect();
    if !stubs.is_empty() {
        let tables: Vec<&str> = stubs.iter().map(|r| r.table.as_str()).collect();
        let ids: Vec<&str> = stubs.iter().map(|r| r.id.as_str()).collect();
        let revs: Vec<String> = stubs.iter().map(|r| r.rev.to_string()).collect();
        let parents: Vec<Option<String>> = stubs.iter().map(|r| r.parent.map(|p| p.to_string())).collect();
        inner.execute(client, &sql.insert_stubs, &[&tables, &ids, &revs, &parents]).await?;
    }
    // The stub entries first: a stub an event of this set fills is then held, and taken by the event.
    // The engine stores each revision's event once per write set (the `WriteSet` contract).
    let events: Vec<&StoredRevision> = writes.revisions.iter().filter(|r| r.event.is_some() && !r.superseded).collect();
    // Events a new one replaces leave `_events` (and their bodies) first: the revision's row is the
    // new event's. One whose body a later event of this set replaces goes straight to the superseded.
    let replaced: Vec<i64> =
        writes.revisions.iter().filter(|r| r.event.is_some()).filter_map(|r| r.replaces).map(sql_seq).collect();
    if !replaced.is_empty() {
        inner.execute(client, &sql.supersede, &[&replaced]).await?;
    }
    let superseded: Vec<&StoredRevision> = writes.revisions.iter().filter(|r| r.superseded).collect();
    if !superseded.is_empty() {
        let (seqs, chains): (Vec<i64>, Vec<&[u8]>) = superseded
            .iter()
            .filter_map(|r| r.event.as_ref())
            .map(|(seq, chain)| (sql_seq(*seq), &chain.0[..]))
            .unzip();
        let tables: Vec<&str> = superseded.iter().map(|r| r.table.as_str()).collect();
        let ids: Vec<&str> = superseded.iter().map(|r| r.id.as_str()).collect();
        let revs: Vec<String> = superseded.iter().map(|r| r.rev.to_string()).collect();
        let parents: Vec<Option<String>> = superseded.iter().map(|r| r.parent.map(|p| p.to_string())).collect();
        let deleted: Vec<bool> = superseded.iter().map(|r| r.deleted).collect();
        let digests: Vec<Option<&[u8]>> = superseded.iter().map(|r| r.foreign.as_ref().map(|d| &d.0[..])).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
            [&seqs, &tables, &ids, &revs, &parents, &deleted, &chains, &digests];
        inner.execute(client, &sql.insert_superseded, &params).await?;
    }
    if !events.is_empty() {
        let tables: Vec<&str> = events.iter().map(|r| r.table.as_str()).collect();
        let ids: Vec<&str> = events.iter().map(|r| r.id.as_str()).collect();
        let revs: Vec<String> = events.iter().map(|r| r.rev.to_string()).collect();
        let parents: Vec<Option<String>> = events.iter().map(|r| r.parent.map(|p| p.to_string())).collect();
        let deleted: Vec<bool> = events.iter().map(|r| r.deleted).collect();
        let bodies: Vec<Option<&str>> = events.iter().map(|r| r.body.as_deref()).collect();
        let (seqs, chains): (Vec<i64>, Vec<&[u8]>) =
            events.iter().filter_map(|r| r.event.as_ref()).map(|(seq, chain)| (sql_seq(*seq), &chain.0[..])).unzip();
        let digests: Vec<Option<&[u8]>> = events.iter().map(|r| r.foreign.as_ref().map(|d| &d.0[..])).collect();
        let statement = if writes.fills_stubs { &sql.fill_events } else { &sql.insert_events };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] =
            [&seqs, &tables, &ids, &revs, &parents, &deleted, &bodies, &chains, &digests];
        inner.execute(client, statement, &params).await?;
    }
    // States of records that had none are inserted; the others replace theirs (an upsert costs
    // PostgreSQL about a third more a row).
    let known = writes.new_states.len() == writes.states.len();
    let (mut new, mut replacing) = (Vec::new(), Vec::new());
    for (i, state) in writes.states.iter().enumerate() {
        if known && writes.new_states[i] {
            new.push(state);
        } else {
            replacing.push(state);
        }
    }
    store_states(inner, client, &sql.upsert_states, &replacing).await?;
    store_states(inner, client, &sql.insert_states, &new).await?;
    if let Some((seq, chain)) = writes.head {
        let payload = format!("{} {seq}", inner.name);
        let updated = inner.query(client, &sql.set_head, &[&sql_seq(seq), &&chain.0[..], &payload]).await?;
        if updated.len() != 1 {
            return Err(Error::corrupt(format!("database {:?} has no head row", inner.name)));
        }
    }
    if let Some(n) = writes.record_count {
        inner.execute(client, &sql.set_record_count, &[&sql_seq(n)]).await?;
    }
    if writes.live_records != 0 {
        inner.execute(client, &sql.add_live_records, &[&writes.live_records]).await?;
    }
    if let Some(p) = writes.resume {
        inner.execute(client, &sql.upsert_resume, &[&p.source, &sql_seq(p.source_seq), &&p.source_chain.0[..]]).await?;
    }
    for l in &writes.local_docs {
        match &l.doc {
            Some((rev, body)) => {
                inner.execute(client, &sql.upsert_local, &[&l.table, &l.id, &sql_seq(*rev), body]).await?
            }
            None => inner.execute(client, &sql.delete_local, &[&l.table, &l.id]).await?,
        };
    }
    if !writes.fill_bodies.is_empty() {
        let (seqs, bodies): (Vec<i64>, Vec<&str>) =
            writes.fill_bodies.iter().map(|(seq, body)| (sql_seq(*seq), body.as_str())).unzip();
        inner.execute(client, &sql.fill_bodies, &[&seqs, &bodies]).await?;
    }
    if !writes.drop_bodies.is_empty() {
        let seqs: Vec<i64> = writes.drop_bodies.iter().map(|s| sql_seq(*s)).collect();
        inner.execute(client, &sql.drop_bodies, &[&seqs]).await?;
    }
    if !writes.forget_knowledge.is_empty() {
        let (peers, peer_seqs): (Vec<Uuid>, Vec<i64>) =
            writes.forget_knowledge.iter().map(|(peer, seq)| (*peer, sql_seq(*seq))).unzip();
        inner.execute(client, &sql.forget_knowledge, &[&peers, &peer_seqs]).await?;
    }
    if !writes.knowledge.is_empty() {
        let k = &writes.knowledge;
        let peers: Vec<Uuid> = k.iter().map(|k| k.peer).collect();
        let peer_seqs: Vec<i64> = k.iter().map(|k| sql_seq(k.peer_seq)).collect();
        let chains: Vec<&[u8]> = k.iter().map(|k| &k.peer_chain.0[..]).collect();
        let local: Vec<i64> = k.iter().map(|k| sql_seq(k.local_seq)).collect();
        let via: Vec<Option<Uuid>> = k.iter().map(|k| k.via).collect();
        inner.execute(client, &sql.insert_knowledge, &[&peers, &peer_seqs, &chains, &local, &via]).await?;
    }
    if let Some(e) = writes.epoch {
        inner.execute(client, &sql.insert_epoch, &[&e.uuid, &sql_seq(e.start_seq)]).await?;
    }
    for table in &writes.views {
        schema::ensure_views(client, &inner.name, table, &inner.target).await?;
    }
    Ok(())
}

/// Store `states` with `statement` (the insert or the upsert of states, which bind the same arrays).
async fn store_states(inner: &Inner, client: &Object, statement: &str, states: &[&StoredState]) -> Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let s = states;
    let tables: Vec<&str> = s.iter().map(|s| s.table.as_str()).collect();
    let ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
    let revs: Vec<String> = s.iter().map(|s| s.rev.to_string()).collect();
    let deleted: Vec<bool> = s.iter().map(|s| s.deleted).collect();
    // A live state's body is its winner's (the write set's rule), which the winner's event holds;
    // a deleted one's is `{}`, whatever its tombstone carries.
    let bodies: Vec<Option<&str>> = s.iter().map(|s| s.deleted.then_some(s.body.as_str())).collect();
    let leaves: Vec<String> = s.iter().map(|s| String::from(&*join_revs(&s.leaves))).collect();
    let conflicts: Vec<String> = s.iter().map(|s| String::from(&*join_revs(&s.conflicts))).collect();
    let field_conflicts: Vec<String> =
        s.iter().map(|s| stored::encode_field_conflicts(&s.field_conflicts).into_owned()).collect();
    let seqs: Vec<i64> = s.iter().map(|s| sql_seq(s.seq)).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] =
        [&tables, &ids, &revs, &deleted, &bodies, &leaves, &conflicts, &field_conflicts, &seqs];
    inner.execute(client, statement, &params).await?;
    Ok(())
}

/// A write transaction: a pooled connection inside `BEGIN … COMMIT`, holding the database's `_meta`
/// row lock. Dropped without commit, it rolls back before the connection is reused.
struct PgWriteTxn {
    inner: Arc<Inner>,
    client: Option<Object>,
}

impl PgWriteTxn {
    fn client(&self) -> Result<&Object> {
        self.client.as_ref().ok_or_else(|| Error::internal("the write transaction has ended"))
    }
}

impl Drop for PgWriteTxn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        // ROLLBACK needs an await; without a runtime the connection is closed instead, which rolls back too.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}

#[async_trait]
impl WriteTxn for PgWriteTxn {
    async fn head(&mut self) -> Result<Head> {
        read_head(&self.inner, self.client()?).await
    }
    async fn load_trees(&mut self, keys: Vec<RecordKey>) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        trees(&self.inner, self.client()?, &keys, |text, _, _| Ok(text.to_owned())).await
    }
    async fn live_states_by_table(&mut self) -> Result<Vec<(String, u64)>> {
        let rows = self.inner.query(self.client()?, &self.inner.sql.live_states_by_table, &[]).await?;
        rows.iter().map(|r| Ok((col(r, 0)?, seq_of(col(r, 1)?)))).collect()
    }
    async fn load_state(&mut self, table: &str, id: &str) -> Result<Option<StoredState>> {
        load_state(&self.inner, self.client()?, table, id).await
    }
    async fn load_local_rev(&mut self, table: &str, id: &str) -> Result<Option<u64>> {
        Ok(local_doc(&self.inner, self.client()?, table, id).await?.map(|(rev, _)| rev))
    }
    async fn apply(&mut self, writes: WriteSet) -> Result<()> {
        apply(&self.inner, self.client()?, &writes).await
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        let client = self.client.take().ok_or_else(|| Error::internal("the write transaction has ended"))?;
        match client.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The outcome is the server's to tell; this connection is not reused either way.
                drop(Object::take(client));
                Err(self.inner.pg(e))
            }
        }
    }
}
