//! The replica source and target (SPEC §7, §8): revisions and events for a peer, revs-diff, replicated
//! revisions stored with their resume point or the knowledge a batch proves, and fork detection.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use outpost_api::{
    names, ChainHash, Epoch, Error, KnowledgeRow, KnowledgeUpdate, PutRevisionsResult, RecordRevs, ReplicaSource,
    ReplicaTarget, Result, ResumePoint, RevId, RevisionData, RevisionEvent, RevisionJson, Uuid,
};

use super::{check_page, stored_body, Engine};
use crate::hash::genesis_chain;
use crate::knowledge;
use crate::plan::PartKey;
use crate::storage::{blocking, blocking_map, drop_aside, RecordKey, Storage};
use crate::tree::{RevisionNode, RevisionTree};
use crate::validate::{self, VerifiedRevision};

impl<S: Storage> Engine<S> {
    /// Store replicated revisions and, atomically with them, a resume point or what a batch proves
    /// (SPEC §7, §8): the write behind `put_revisions`, `put_revisions_with_knowledge` and
    /// `record_knowledge`.
    async fn store_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
        knowledge: Option<KnowledgeUpdate>,
    ) -> Result<PutRevisionsResult> {
        self.store_verified(revisions, validate::replicated, resume, knowledge).await
    }

    /// [`Engine::store_revisions`], each revision checked by `verify` (`validate::replicated`, or
    /// `validate::replayed` for events replayed from quicksync files).
    async fn store_verified(
        &self,
        revisions: Vec<RevisionData>,
        verify: fn(RevisionData, &outpost_api::Limits) -> Result<VerifiedRevision>,
        resume: Option<ResumePoint>,
        knowledge: Option<KnowledgeUpdate>,
    ) -> Result<PutRevisionsResult> {
        validate::batch(revisions.len(), &self.limits, "revisions")?;
        // The records' names before any storage is read for them; the rest of each revision below.
        revisions.iter().try_for_each(validate::revision_key)?;
        if let Some(point) = &resume {
            validate::resume_point(point)?;
        }
        if let Some(update) = &knowledge {
            validate::knowledge(update)?;
        }
        let rows = match knowledge {
            Some(update) => knowledge::rows(update)?,
            None => Vec::new(),
        };
        // Chains at committed seqs never change, so the fork check may read before the write begins.
        // Without knowledge (every put_revisions of a pass) there is nothing to check or read.
        let fork = if rows.is_empty() { None } else { self.fork_point(&rows).await? };
        // The rows held now, for pruning: few per peer once pruned (`knowledge::retained`).
        let held = if rows.is_empty() { Vec::new() } else { self.store()?.knowledge(None).await? };
        let mut keys: Vec<RecordKey> = revisions.iter().map(|r| (r.table.clone(), r.id.clone())).collect();
        // The planner checks a foreign revision's table by its definition (`Planner::finish`).
        keys.extend(
            revisions.iter().filter(|r| r.foreign.is_some()).map(|r| (names::TABLES_TABLE.to_owned(), r.table.clone())),
        );
        keys.sort();
        keys.dedup();
        // Each body re-hashed (CPU work, off the async workers) while the write begins and the
        // trees are read: the transaction is rolled back unused when a revision is refused.
        let limits = self.limits;
        let verifying = async move {
            blocking_map(revisions, move |r| verify(r, &limits)).await?.into_iter().collect::<Result<Vec<_>>>()
        };
        let records = keys.len();
        let opening = async {
            let mut txn = self.begin().await?;
            let head = txn.head().await?;
            let trees = if keys.is_empty() { HashMap::new() } else { txn.load_trees(keys).await? };
            Ok::<_, Error>((txn, head, trees))
        };
        // A refused revision ends the write at once (the transaction begun meanwhile rolls back).
        let (revisions, (mut txn, head, trees)) = tokio::try_join!(verifying, opening)?;
        let loaded = (head.clone(), trees, records);
        let key: PartKey<VerifiedRevision> = |r| Some((r.table(), r.id(), r.foreign().is_some()));
        let (mut writes, spent, new) =
            self.plan_in_parts(&mut txn, loaded, (revisions, key), |planner, r| planner.replicated(r)).await?;
        let written = new.into_iter().filter(|new| *new).count() as u64;
        drop_aside(spent);
        writes.resume = resume;
        let update_seq = writes.head.map_or(head.update_seq, |h| h.0);
        writes.knowledge = knowledge::stamped(rows, &head, update_seq);
        writes.forget_knowledge = knowledge::forgotten(&held, &writes.knowledge);
        // Invariant: knowledge holds from the state after the write that records it.
        debug_assert!(writes.knowledge.iter().all(|r| r.local_seq == update_seq), "knowledge stamped at its write");
        // A fork of the uuid in force when checked; a new epoch begun since already separates the copies.
        writes.epoch = match fork {
            Some((uuid, start_seq)) if head.uuid() == uuid => Some(Epoch { uuid: Uuid::new_v4(), start_seq }),
            _ => None,
        };
        if let Some(e) = &writes.epoch {
            tracing::warn!(db = self.storage.name(), new_uuid = %e.uuid, start_seq = e.start_seq,
                "a peer's knowledge shows this database's history forked under its uuid: a new epoch begins");
        }
        self.commit(txn, writes).await?;
        Ok(PutRevisionsResult { written, update_seq })
    }

    /// Take the revisions whose bodies a peer may improve out of `held` when `have` asks about them:
    /// pending ones (`RevisionTree::leaves`), so that a peer holding one with its body sends it, and
    /// foreign ones (SPEC §3), so that a native body — or a foreign one of a smaller digest — reaches
    /// this database and replaces the one held. Only records with such a revision have their trees
    /// read.
    async fn unhold_improvable(
        &self,
        have: &[RecordRevs],
        held: &mut HashMap<RecordKey, HashSet<RevId>>,
    ) -> Result<()> {
        let asked: Vec<RecordKey> = have
            .iter()
            .map(|h| (h.table.clone(), h.id.clone()))
            .filter(|key| held.get(key).is_some_and(|revs| !revs.is_empty()))
            .collect();
        if asked.is_empty() {
            return Ok(());
        }
        let improvable = self.store()?.improvable_revs(&asked).await?;
        let suspects: Vec<RecordKey> = have
            .iter()
            .filter(|h| {
                let key = (h.table.clone(), h.id.clone());
                improvable.get(&key).is_some_and(|b| h.revs.iter().any(|r| b.contains(r)))
            })
            .map(|h| (h.table.clone(), h.id.clone()))
            .collect();
        if suspects.is_empty() {
            return Ok(());
        }
        let trees = self.store()?.load_trees(&suspects).await?;
        for (key, tree) in trees {
            if let Some(revs) = held.get_mut(&key) {
                // Foreign leaves only: a foreign ancestor is asked about with every change of its
                // record (a whole PouchDB-made history each time), and its better body would not
                // change what the record reads as.
                let improvable = |r: &RevId| {
                    tree.is_pending(r) || (tree.is_leaf(r) && tree.get(r).is_some_and(|n| n.foreign.is_some()))
                };
                revs.retain(|r| !improvable(r));
            }
        }
        Ok(())
    }

    /// The fork rule of [`knowledge::fork_point`], fed this database's chain hashes at the seqs the
    /// rows name.
    async fn fork_point(&self, rows: &[KnowledgeRow]) -> Result<Option<(Uuid, u64)>> {
        let head = self.store()?.head().await?;
        let mut chains: HashMap<u64, ChainHash> = HashMap::new();
        for seq in knowledge::seqs_to_check(&head, rows) {
            chains.insert(seq, self.chain_hash_at(seq).await?);
        }
        Ok(knowledge::fork_point(&head, rows, &chains))
    }
}

#[async_trait]
impl<S: Storage> ReplicaSource for Engine<S> {
    async fn get_revisions(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionData>> {
        let wanted = validate::record_revs(wanted, &self.limits, "revs/get")?;
        let trees = self.store()?.load_stored_trees(&keys_of(&wanted)).await?;
        // Each stored body read into both its encodings (CPU work): the target takes them as they are.
        blocking(move || {
            sending(wanted, trees, |key, rev, node, ancestry| {
                Ok(RevisionData {
                    table: key.0.clone(),
                    id: key.1.clone(),
                    rev,
                    deleted: node.deleted,
                    attributes: node.body.as_deref().map(stored_body).transpose()?,
                    ancestry,
                    foreign: node.foreign,
                })
            })
        })
        .await?
    }

    async fn get_revisions_json(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionJson>> {
        let wanted = validate::record_revs(wanted, &self.limits, "revs/get")?;
        let trees = self.store()?.load_stored_trees(&keys_of(&wanted)).await?;
        // The stored text goes out as it is, but only as well-formed JSON: a file damaged behind
        // Outpost's back gives an error here, not a broken answer (the receiver re-hashes every body).
        blocking(move || {
            sending(wanted, trees, |key, rev, node, ancestry| {
                let attributes = node
                    .body
                    .take()
                    .map(|b| {
                        serde_json::value::RawValue::from_string(b).map_err(|e| {
                            Error::corrupt(format!(
                                "record {}/{}: the stored body of {rev} is not JSON: {e}",
                                key.0, key.1
                            ))
                        })
                    })
                    .transpose()?;
                let (deleted, foreign) = (node.deleted, node.foreign);
                Ok(RevisionJson {
                    table: key.0.clone(),
                    id: key.1.clone(),
                    rev,
                    deleted,
                    attributes,
                    ancestry,
                    foreign,
                })
            })
        })
        .await?
    }

    async fn chain_hash_at(&self, seq: u64) -> Result<ChainHash> {
        let head = self.store()?.head().await?;
        if seq == 0 {
            return Ok(genesis_chain(head.epochs[0].uuid));
        }
        if seq > head.update_seq {
            return Err(Error::not_found(format!("seq {seq} is beyond update_seq {}", head.update_seq)));
        }
        self.store()?
            .chain_at(seq)
            .await?
            .ok_or_else(|| Error::corrupt(format!("no chain hash is stored at seq {seq}")))
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        upto.map(|s| validate::seq(s, "upto")).transpose()?;
        self.store()?.knowledge(upto).await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<RevisionEvent>> {
        let limit = check_page(limit)?;
        validate::seq(after, "after")?;
        let events = self.store()?.events(after, limit).await?;
        // Only revisions with a parent can have stubs above them; their trees say which parents are stubs.
        let mut keys: Vec<RecordKey> = events
            .iter()
            .filter(|e| e.revision.parent.is_some())
            .map(|e| (e.revision.table.clone(), e.revision.id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let trees = if keys.is_empty() { HashMap::new() } else { self.store()?.load_trees(&keys).await? };
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let r = e.revision;
            let tree = trees.get(&(r.table.clone(), r.id.clone()));
            // Through stubs only: a parent held with a body has an event of its own carrying its line.
            let mut ancestry = Vec::new();
            let mut next = r.parent;
            while let Some(p) = next.filter(|_| (ancestry.len() as u64) < r.rev.generation) {
                ancestry.push(p);
                next = tree.and_then(|t| t.get(&p)).filter(|n| n.is_stub()).and_then(|n| n.parent);
            }
            let attributes = r.body.as_deref().map(stored_body).transpose()?;
            out.push(RevisionEvent {
                seq: e.seq,
                chain: e.chain,
                revision: RevisionData {
                    table: r.table,
                    id: r.id,
                    rev: r.rev,
                    deleted: r.deleted,
                    attributes,
                    ancestry,
                    foreign: r.foreign,
                },
            });
        }
        Ok(out)
    }
}

fn keys_of(wanted: &[RecordRevs]) -> Vec<RecordKey> {
    wanted.iter().map(|w| (w.table.clone(), w.id.clone())).collect()
}

/// The revisions `wanted` names, from their records' `trees`, each made by `make` from its record,
/// id, node (whose body it may take: each revision is sent once) and ancestry. Each line of history is sent once: a revision's ancestry
/// stops at the nearest older revision also asked for (and sent with its body), which carries the
/// rest, so asking for a whole history of depth d costs O(d), not O(d²).
fn sending<B, T>(
    wanted: Vec<RecordRevs>,
    mut trees: HashMap<RecordKey, RevisionTree<B>>,
    mut make: impl FnMut(&RecordKey, RevId, &mut RevisionNode<B>, Vec<RevId>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for w in wanted {
        let key = (w.table, w.id);
        let Some(tree) = trees.get_mut(&key) else { continue };
        let sent: HashSet<RevId> =
            w.revs.iter().copied().filter(|r| tree.get(r).is_some_and(|n| !n.is_stub())).collect();
        let mut done = HashSet::new();
        for rev in w.revs {
            if !done.insert(rev) {
                continue;
            }
            let mut ancestry = tree.ancestry(&rev);
            let Some(node) = tree.get_mut(&rev) else { continue };
            if let Some(i) = ancestry.iter().position(|a| sent.contains(a)) {
                ancestry.truncate(i + 1);
            }
            out.push(make(&key, rev, node, ancestry)?);
        }
    }
    Ok(out)
}

#[async_trait]
impl<S: Storage> ReplicaTarget for Engine<S> {
    async fn revs_diff(&self, have: Vec<RecordRevs>) -> Result<Vec<RecordRevs>> {
        let have = validate::record_revs(have, &self.limits, "revs-diff")?;
        let keys: Vec<RecordKey> = have.iter().map(|w| (w.table.clone(), w.id.clone())).collect();
        let mut held = self.store()?.held_revs(&keys).await?;
        self.unhold_improvable(&have, &mut held).await?;
        let mut out = Vec::new();
        for h in have {
            let held = held.get(&(h.table.clone(), h.id.clone()));
            let missing: Vec<RevId> = h.revs.into_iter().filter(|r| !held.is_some_and(|t| t.contains(r))).collect();
            if !missing.is_empty() {
                out.push(RecordRevs { table: h.table, id: h.id, revs: missing });
            }
        }
        Ok(out)
    }

    async fn put_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
    ) -> Result<PutRevisionsResult> {
        self.store_revisions(revisions, resume, None).await
    }

    async fn put_events(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: Option<KnowledgeUpdate>,
    ) -> Result<PutRevisionsResult> {
        self.store_verified(revisions, validate::replayed, None, knowledge).await
    }

    async fn put_revisions_with_knowledge(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: KnowledgeUpdate,
    ) -> Result<PutRevisionsResult> {
        self.store_revisions(revisions, None, Some(knowledge)).await
    }

    async fn record_knowledge(&self, update: KnowledgeUpdate) -> Result<()> {
        self.store_revisions(Vec::new(), None, Some(update)).await.map(|_| ())
    }

    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        self.store()?.resume_point(source).await
    }
}
