//! Reads: records (merged on read under `merge-fields`), tables, the changes feed and its waits, and
//! the database's info.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use outpost_api::{
    names, ChangeReader, ChangesPage, ChangesRequest, DbInfo, Error, GetOptions, InfoReader, ListOptions,
    ReconcilePolicy, Record, RecordPage, RecordReader, ReplicaSource, Result, TableDef, TableReader,
    PENDING_EXACT_UP_TO,
};

use super::{check_page, parse_body, table_def_of, Engine};
use crate::reconcile::reconcile;
use crate::storage::{FeedFilter, Head, RecordKey, Storage, StoredState};
use crate::tree::RevisionTree;
use crate::validate;

#[async_trait]
impl<S: Storage> TableReader for Engine<S> {
    async fn get_table(&self, name: &str) -> Result<TableDef> {
        names::validate_table_name(name)?;
        let state = self.store()?.load_state(names::TABLES_TABLE, name).await?;
        table_def_of(name, state.as_ref())
    }

    async fn list_tables(&self) -> Result<Vec<TableDef>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store()?.list_states(names::TABLES_TABLE, after.as_deref(), 1000, false).await?;
            let done = page.len() < 1000;
            for s in &page {
                out.push(table_def_of(&s.id, Some(s))?);
            }
            after = page.last().map(|s| s.id.clone());
            if done {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl<S: Storage> RecordReader for Engine<S> {
    async fn count_records(&self, table: &str) -> Result<u64> {
        self.get_table(table).await?;
        self.store()?.live_count(table).await
    }

    async fn get_record(&self, table: &str, id: &str, options: GetOptions) -> Result<Record> {
        let def = self.get_table(table).await?;
        names::validate_record_id(id, names::MAX_ID_BYTES)?;
        let missing = || Error::not_found(format!("record {table}/{id} does not exist"));
        let state = self.store()?.load_state(table, id).await?.ok_or_else(missing)?;
        let merges = merges_on_read(&def, &state);
        let tree = if options.rev.is_some() || options.revs || merges {
            let key = (table.to_owned(), id.to_owned());
            self.store()?.load_trees(std::slice::from_ref(&key)).await?.remove(&key).unwrap_or_default()
        } else {
            RevisionTree::new()
        };
        let mut record = match options.rev {
            Some(rev) => {
                let node =
                    tree.get(&rev).ok_or_else(|| Error::not_found(format!("{table}/{id} has no revision {rev}")))?;
                let body = node.body.clone().ok_or_else(|| {
                    Error::not_found(format!("the body of {table}/{id} revision {rev} is not stored"))
                })?;
                Record {
                    table: table.into(),
                    id: id.into(),
                    rev,
                    deleted: node.deleted,
                    attributes: body,
                    conflicts: None,
                    field_conflicts: None,
                    revisions: None,
                }
            }
            None if state.deleted => return Err(Error::not_found(format!("record {table}/{id} was deleted"))),
            None => record_of(&def, state.clone(), merges.then_some(&tree))?,
        };
        if options.conflicts {
            record.conflicts = Some(state.conflicts.clone());
            if record.field_conflicts.is_none() {
                record.field_conflicts = Some(vec![]);
            }
        } else {
            record.field_conflicts = None;
        }
        if options.revs {
            let mut revs = vec![record.rev];
            revs.extend(tree.ancestry(&record.rev));
            record.revisions = Some(revs);
        }
        Ok(record)
    }

    async fn list_records(&self, table: &str, options: ListOptions) -> Result<RecordPage> {
        let def = self.get_table(table).await?;
        let limit = check_page(options.limit)?;
        let mut states =
            self.store()?.list_states(table, options.after.as_deref(), limit + 1, options.include_deleted).await?;
        let more = states.len() > limit;
        states.truncate(limit);
        let next_after = if more { states.last().map(|s| s.id.clone()) } else { None };
        let merge_keys: Vec<RecordKey> =
            states.iter().filter(|s| merges_on_read(&def, s)).map(|s| (s.table.clone(), s.id.clone())).collect();
        let trees = if merge_keys.is_empty() { HashMap::new() } else { self.store()?.load_trees(&merge_keys).await? };
        let mut records = Vec::with_capacity(states.len());
        for s in states {
            let tree = trees.get(&(s.table.clone(), s.id.clone()));
            let mut record = record_of(&def, s, tree)?;
            record.field_conflicts = None;
            records.push(record);
        }
        Ok(RecordPage { records, next_after })
    }
}

/// Whether a record's read needs its tree: a `merge-fields` table merges live conflicts on read.
fn merges_on_read(def: &TableDef, state: &StoredState) -> bool {
    def.policy == ReconcilePolicy::MergeFields && !state.deleted && !state.conflicts.is_empty()
}

/// A record as read from its stored state, merged under `merge-fields` when its tree is given.
fn record_of(def: &TableDef, state: StoredState, tree: Option<&RevisionTree>) -> Result<Record> {
    let (attributes, field_conflicts) = match tree {
        Some(tree) if merges_on_read(def, &state) => {
            let r = reconcile(tree, def.policy)?;
            (r.body.into_owned(), r.field_conflicts)
        }
        _ => (parse_body(&state.body)?, vec![]),
    };
    Ok(Record {
        table: state.table,
        id: state.id,
        rev: state.rev,
        deleted: state.deleted,
        attributes,
        conflicts: None,
        field_conflicts: Some(field_conflicts),
        revisions: None,
    })
}

#[async_trait]
impl<S: Storage> ChangeReader for Engine<S> {
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage> {
        let limit = check_page(request.limit)?;
        validate::seq(request.since, "since")?;
        let tables = validate::table_filter(request.tables, &self.limits)?;
        // A table's definition travels with its records: a filtered feed carries its `_tables` record.
        let filter = tables.map(|tables| FeedFilter {
            records: tables.iter().map(|t| (names::TABLES_TABLE.to_owned(), t.clone())).collect(),
            tables,
        });
        let read = self.store()?.changes(request.since, limit, filter.as_ref(), PENDING_EXACT_UP_TO).await?;
        // Drained, the reader has seen everything up to update_seq (the knowledge rule of §8 relies on it).
        let last_seq = match (read.pending, read.changes.last()) {
            (0, _) => read.update_seq.max(request.since),
            (_, Some(last)) => last.seq,
            (_, None) => request.since,
        };
        let last_chain = Some(self.chain_hash_at(last_seq).await?);
        Ok(ChangesPage { changes: read.changes, last_seq, pending: read.pending, last_chain })
    }

    async fn wait_for_changes(&self, since: u64, timeout: Duration) -> Result<u64> {
        validate::seq(since, "since")?;
        // Subscribe before reading the head, so that no commit falls between the two.
        let mut rx = self.committed.subscribe();
        let external = self.storage.external_commits();
        let current = self.store()?.head().await?.update_seq;
        if current > since {
            return Ok(current);
        }
        let ours = async { rx.wait_for(|s| *s > since).await.ok().map(|s| *s) };
        // Closed (the database deleted): wake, so that the head read below answers NotFound.
        let mut closed = self.closed.subscribe();
        let deleted = async {
            let _ = closed.wait_for(|c| *c).await;
            None
        };
        // Commits by other writers of the same storage only wake the wait: the head read below is the
        // answer. A closed channel never wakes.
        let theirs = async {
            if let Some(mut ext) = external {
                if ext.wait_for(|s| *s > since).await.is_ok() {
                    return None;
                }
            }
            std::future::pending().await
        };
        let woken = tokio::time::timeout(timeout, async {
            tokio::select! {
                seq = ours => seq,
                seq = theirs => seq,
                seq = deleted => seq,
            }
        })
        .await
        .ok()
        .flatten();
        match woken {
            Some(seq) => Ok(seq),
            None => Ok(self.store()?.head().await?.update_seq),
        }
    }
}

#[async_trait]
impl<S: Storage> InfoReader for Engine<S> {
    async fn info(&self) -> Result<DbInfo> {
        let head: Head = self.store()?.head().await?;
        Ok(DbInfo {
            name: self.storage.name().to_owned(),
            uuid: head.uuid(),
            epochs: head.epochs.clone(),
            update_seq: head.update_seq,
            chain: head.chain,
            record_count: match self.store()?.record_count().await? {
                Some(n) => n,
                None => self.recount().await?,
            },
            backend: self.storage.backend().to_owned(),
        })
    }

    async fn size_bytes(&self) -> Result<Option<u64>> {
        self.store()?.size_bytes().await
    }
}
