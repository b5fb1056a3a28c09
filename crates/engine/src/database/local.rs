//! Local writes (SPEC §4.1): records, batches and table definitions, validated by
//! [`crate::validate::local`], planned in one transaction by [`Planner::local_write`].

use std::collections::HashMap;
use std::future::Future;

use async_trait::async_trait;
use outpost_api::{
    names, Attributes, BatchResult, Error, ErrorKind, NewTable, PutRecord, ReconcilePolicy, RecordWriter, Result,
    RevId, TableDef, TableReader, TableUpdate, TableWriter, Timestamp, WriteOp, WriteResult,
};

use super::{table_def_of, Engine};
use crate::plan::{LocalWrite, PartKey};
use crate::storage::{blocking_map, drop_aside, RecordKey, Storage};
use crate::validate;

impl<S: Storage> Engine<S> {
    /// Run local writes in one transaction; per-operation results in order. `named` are the records
    /// the writes name (`validate::named`: only well-named ones), known before `ops` are validated, so
    /// the write begins and reads their tables' definitions and their trees meanwhile.
    async fn write_local(
        &self,
        named: Vec<RecordKey>,
        ops: impl Future<Output = Result<Vec<Result<LocalWrite>>>> + Send,
        check_fields: bool,
    ) -> Result<BatchResult> {
        let opening = async {
            let mut txn = self.begin().await?;
            let head = txn.head().await?;
            let mut defs: HashMap<String, Result<TableDef>> = HashMap::new();
            // Each record once, its names moved (a batch's ids mostly come sorted already).
            let mut keys = named;
            keys.sort_unstable();
            keys.dedup();
            for (table, _) in &keys {
                if table != names::TABLES_TABLE && !defs.contains_key(table) {
                    let state = txn.load_state(names::TABLES_TABLE, table).await?;
                    defs.insert(table.clone(), table_def_of(table, state.as_ref()));
                }
            }
            let records = keys.len();
            let trees = txn.load_trees(keys).await?;
            Ok::<_, Error>((txn, head, defs, records, trees))
        };
        // A failure on either side ends the write at once (a transaction begun rolls back).
        let (ops, (mut txn, head, defs, records, trees)) = tokio::try_join!(ops, opening)?;
        // Planning hashes the chain and reconciles each record: CPU work, kept off the async workers,
        // in parts stored while the next is planned. Each write's typed attributes, once their fields
        // are checked (the planner takes the encodings), are freed with the trees, off the writer's
        // path.
        let loaded = (head, trees, records);
        let key: PartKey<Result<LocalWrite>> = |w| w.as_ref().ok().map(|w| (&*w.table, &*w.id, false));
        let (writes, spent, planned) = self
            .plan_in_parts(&mut txn, loaded, (ops, key), move |planner, w| {
                let mut checked = Attributes::new();
                let outcome = w.and_then(|mut w| {
                    let policy = if w.table == names::TABLES_TABLE {
                        ReconcilePolicy::KeepConflicts
                    } else {
                        let def = defs.get(&w.table).ok_or_else(|| Error::internal("a write's table was not named"))?;
                        let def = def.as_ref().map_err(Clone::clone)?;
                        if check_fields && !w.deleted {
                            def.check_fields(&w.attributes)?;
                        }
                        def.policy
                    };
                    checked = std::mem::take(&mut w.attributes);
                    planner.local_write(w, policy)
                });
                // An internal error (a record planned again after a part closed it) is the whole
                // write's, not one operation's.
                match outcome {
                    Err(e) if e.kind == ErrorKind::Internal => Err(e),
                    outcome => Ok((outcome, checked)),
                }
            })
            .await?;
        let (results, checked): (Vec<Result<WriteResult>>, Vec<Attributes>) = planned.into_iter().unzip();
        drop_aside((spent, checked));
        self.commit(txn, writes).await?;
        Ok(results)
    }

    async fn write_one(&self, w: Result<LocalWrite>) -> Result<WriteResult> {
        let named = w.as_ref().ok().map(|w| (w.table.clone(), w.id.clone())).into_iter().collect();
        self.write_local(named, std::future::ready(Ok(vec![w])), true).await?.pop().expect("one result per operation")
    }

    async fn write_table(&self, name: &str, parent: Option<RevId>, deleted: bool, body: Attributes) -> Result<RevId> {
        // A definition travels as a `_tables` record: the record body limit binds it too (every peer
        // would refuse a larger one).
        let encoded = validate::encoded(&body, &self.limits)
            .map_err(|e| e.context(format!("the definition of table {name:?}")))?;
        let w = LocalWrite {
            table: names::TABLES_TABLE.into(),
            id: name.into(),
            parent,
            deleted,
            attributes: body,
            encoded,
            resolves: vec![],
        };
        Ok(self.write_one(Ok(w)).await?.rev)
    }
}

/// A table open to CouchDB-protocol peers uses keep-conflicts (SPEC §17: PouchDB never sends inner
/// bodies, so `merge-fields` could reconcile one tree differently on two servers).
fn check_couch(def: &TableDef) -> Result<()> {
    if def.couch && def.policy != ReconcilePolicy::KeepConflicts {
        return Err(Error::invalid(format!(
            "table {:?}: a table open to CouchDB-protocol peers (couch) uses keep-conflicts",
            def.name
        )));
    }
    Ok(())
}

/// A table's `keep_bodies` counts generations: no more than a revision can have.
fn check_keep_bodies(keep: Option<u64>) -> Result<()> {
    match keep {
        Some(n) if n > outpost_api::MAX_GENERATION => {
            Err(Error::invalid(format!("keep_bodies is at most {}", outpost_api::MAX_GENERATION)))
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl<S: Storage> RecordWriter for Engine<S> {
    async fn put_record(&self, table: &str, put: PutRecord) -> Result<WriteResult> {
        let op = WriteOp::put(table, put);
        self.write_one(validate::local(&self.limits, op)).await
    }

    async fn delete_record(&self, table: &str, id: &str, rev: Option<RevId>) -> Result<WriteResult> {
        self.write_one(validate::local(&self.limits, WriteOp::delete(table, id, rev))).await
    }

    async fn write_batch(&self, mut ops: Vec<WriteOp>) -> Result<BatchResult> {
        validate::batch(ops.len(), &self.limits, "operations")?;
        validate::assign_ids(&mut ops);
        let named = ops.iter().filter_map(validate::named).collect();
        let limits = self.limits;
        // Each body encoded and measured on the blocking pool while the write begins.
        let prepared = blocking_map(ops, move |op| validate::local(&limits, op));
        self.write_local(named, prepared, true).await
    }
}

#[async_trait]
impl<S: Storage> TableWriter for Engine<S> {
    async fn create_table(&self, table: NewTable) -> Result<TableDef> {
        names::validate_table_name(&table.name)?;
        for name in table.fields.keys().chain(table.metadata.keys()) {
            names::validate_attribute_name(name)?;
        }
        self.check_body(&table.metadata)?;
        check_keep_bodies(table.keep_bodies)?;
        if let Some(state) = self.store()?.load_state(names::TABLES_TABLE, &table.name).await? {
            if !state.deleted {
                return Err(Error::already_exists(format!("table {:?} exists", table.name)));
            }
        }
        let def = TableDef {
            name: table.name.clone(),
            rev: RevId::new(1, [0; 16]),
            description: table.description,
            created_at: Timestamp::now(),
            created_by: table.created_by,
            policy: table.policy,
            fields: table.fields,
            metadata: table.metadata,
            keep_bodies: table.keep_bodies,
            couch: table.couch,
        };
        check_couch(&def)?;
        // A concurrent create of the same name wins the race inside the transaction: that is AlreadyExists.
        self.write_table(&table.name, None, false, def.to_attributes()).await.map_err(|e| match e.kind {
            outpost_api::ErrorKind::Conflict => Error::already_exists(format!("table {:?} exists", table.name)),
            _ => e,
        })?;
        self.get_table(&table.name).await
    }

    async fn update_table(&self, name: &str, update: TableUpdate) -> Result<TableDef> {
        let mut def = self.get_table(name).await?;
        let parent = update.rev.unwrap_or(def.rev);
        if let Some(d) = update.description {
            def.description = d;
        }
        if let Some(p) = update.policy {
            def.policy = p;
        }
        if let Some(f) = update.fields {
            for name in f.keys() {
                names::validate_attribute_name(name)?;
            }
            def.fields = f;
        }
        if let Some(m) = update.metadata {
            self.check_body(&m)?;
            def.metadata = m;
        }
        if let Some(keep) = update.keep_bodies {
            check_keep_bodies(keep)?;
            def.keep_bodies = keep;
        }
        if let Some(couch) = update.couch {
            def.couch = couch;
        }
        check_couch(&def)?;
        self.write_table(name, Some(parent), false, def.to_attributes()).await?;
        self.get_table(name).await
    }

    async fn delete_table(&self, name: &str) -> Result<()> {
        let def = self.get_table(name).await?;
        self.write_table(name, Some(def.rev), true, Attributes::new()).await?;
        Ok(())
    }
}
