//! Planning a write transaction: what local writes (SPEC §4.1) and replicated writes (§4.2) add to
//! the revision trees, which seqs and chain hashes the new revision events get (§5), and the new
//! reconciled states. Pure: it works on trees the storage loaded and yields a [`WriteSet`].

use std::collections::{HashMap, HashSet};

use outpost_api::{names, Attributes, ChainHash, Error, ReconcilePolicy, Result, RevId, RevisionData, MAX_GENERATION};

use crate::hash::{next_chain, revision_id};
use crate::reconcile::reconcile;
use crate::storage::{Head, RecordKey, StoredRevision, StoredState, WriteSet};
use crate::tree::{RevisionNode, RevisionTree};

/// A local write, already validated against limits and field declarations.
#[derive(Clone, Debug)]
pub struct LocalWrite {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The edited revision (`None`: create, revive after delete, or for a delete the winner).
    pub parent: Option<RevId>,
    /// Write a tombstone.
    pub deleted: bool,
    /// The new body (empty for a tombstone).
    pub attributes: Attributes,
    /// Leaves to close with tombstones.
    pub resolves: Vec<RevId>,
}

/// A revision a write adds, before it gets its seq.
struct NewRevision {
    rev: RevId,
    parent: Option<RevId>,
    deleted: bool,
    body: Attributes,
}

impl NewRevision {
    fn on(table: &str, id: &str, parent: Option<RevId>, deleted: bool, body: Attributes) -> Self {
        let rev = revision_id(table, id, parent.as_ref(), deleted, &body);
        NewRevision { rev, parent, deleted, body }
    }
}

/// Accumulates the writes of one transaction.
pub struct Planner {
    update_seq: u64,
    chain: ChainHash,
    trees: HashMap<RecordKey, RevisionTree>,
    /// Records whose winner was live before the transaction (for the live-record count).
    live_before: HashSet<RecordKey>,
    /// Touched records in first-touch order, and the same as a set.
    touched: Vec<RecordKey>,
    touched_set: HashSet<RecordKey>,
    revisions: Vec<StoredRevision>,
}

impl Planner {
    /// Start from the head and the trees of every record the transaction may touch.
    pub fn new(head: &Head, trees: HashMap<RecordKey, RevisionTree>) -> Self {
        let live_before =
            trees.iter().filter(|(key, tree)| counts(key) && is_live(tree)).map(|(key, _)| key.clone()).collect();
        Planner {
            update_seq: head.update_seq,
            chain: head.chain,
            trees,
            live_before,
            touched: Vec::new(),
            touched_set: HashSet::new(),
            revisions: Vec::new(),
        }
    }

    /// The tree of a record as planned so far.
    pub fn tree(&self, table: &str, id: &str) -> Option<&RevisionTree> {
        self.trees.get(&(table.to_owned(), id.to_owned()))
    }

    /// Revision events planned so far.
    pub fn events(&self) -> usize {
        self.revisions.iter().filter(|r| r.event.is_some()).count()
    }

    /// Plan a local write; returns the revision the caller gets back. On error nothing is planned.
    pub fn local_write(&mut self, w: &LocalWrite, policy: ReconcilePolicy) -> Result<RevId> {
        let key = (w.table.clone(), w.id.clone());
        let tree = self.trees.entry(key.clone()).or_default();
        let (result, new) = plan_local(tree, w, policy)?;
        // Checked before anything is planned: an id past the largest generation could not be read back.
        if let Some(n) = new.iter().find(|n| n.rev.generation > MAX_GENERATION) {
            return Err(Error::invalid(format!(
                "record {}/{} has reached the largest generation ({MAX_GENERATION}) on the branch of {}; it takes \
                 no further revision there",
                w.table,
                w.id,
                n.parent.map_or_else(String::new, |p| p.to_string())
            )));
        }
        for n in new {
            self.add_event(&key, n.rev, n.parent, n.deleted, &n.body)?;
        }
        Ok(result)
    }

    /// Plan one replicated revision (SPEC §4.2): verify its hash, add missing ancestors as stubs, add it
    /// (or fill in its stub). Returns whether it was a new revision event; a known revision is a no-op.
    pub fn replicated(&mut self, r: &RevisionData) -> Result<bool> {
        names::validate_any_table_name(&r.table)?;
        names::validate_record_id(&r.id, names::MAX_ID_BYTES)?;
        let body = match (&r.attributes, r.deleted) {
            (Some(a), _) => a.clone(),
            (None, true) => Attributes::new(),
            (None, false) => {
                return Err(Error::invalid(format!("revision {} of {}/{} carries no body", r.rev, r.table, r.id)))
            }
        };
        if !(1..=MAX_GENERATION).contains(&r.rev.generation) {
            return Err(Error::invalid(format!(
                "revision {} of {}/{}: the generation is not between 1 and {MAX_GENERATION}",
                r.rev, r.table, r.id
            )));
        }
        // An ancestry cut short (`input::replicated`, SPEC §13's revs limit) ends in a stub without a parent,
        // linked later if a longer ancestry arrives.
        let ancestry = &r.ancestry[..];
        // The ancestry must be a chain of consecutive generations ending at the parent.
        let mut expect = r.rev.generation;
        for a in ancestry {
            if a.generation.checked_add(1) != Some(expect) {
                return Err(Error::invalid(format!(
                    "revision {} of {}/{}: ancestry is not a chain of consecutive generations",
                    r.rev, r.table, r.id
                )));
            }
            expect = a.generation;
        }
        let parent = ancestry.first().copied();
        if parent.is_none() && r.rev.generation != 1 {
            return Err(Error::invalid(format!(
                "revision {} of {}/{} has no parent in its ancestry",
                r.rev, r.table, r.id
            )));
        }
        let actual = revision_id(&r.table, &r.id, parent.as_ref(), r.deleted, &body);
        if actual != r.rev {
            return Err(Error::corrupt(format!(
                "revision {} of {}/{} does not match its body (it hashes to {actual})",
                r.rev, r.table, r.id
            )));
        }
        if r.table == names::TABLES_TABLE && !r.deleted {
            names::validate_table_name(&r.id)?;
            outpost_api::TableDef::from_record(&r.id, r.rev, &body)?;
        }
        let key = (r.table.clone(), r.id.clone());
        let tree = self.trees.entry(key.clone()).or_default();
        let held = tree.get(&r.rev).is_some_and(|n| !n.is_stub());
        // Ancestors we lack become stubs, each linked to the next one up when the ancestry says. An
        // ancestor held without its parent (an earlier ancestry was truncated there) gets linked now:
        // otherwise its own ancestors would look like separate leaves.
        let mut stubs = Vec::new();
        for (i, a) in ancestry.iter().enumerate() {
            let up = ancestry.get(i + 1).copied();
            match tree.get_mut(a) {
                None => {
                    tree.insert(*a, RevisionNode { parent: up, deleted: false, body: None, seq: None });
                    stubs.push((*a, up));
                }
                Some(node) if node.parent.is_none() && up.is_some() => {
                    node.parent = up;
                    stubs.push((*a, up));
                }
                Some(_) => {}
            }
        }
        let linked = !stubs.is_empty();
        for (rev, up) in stubs {
            self.revisions.push(StoredRevision {
                table: r.table.clone(),
                id: r.id.clone(),
                rev,
                parent: up,
                deleted: false,
                body: None,
                event: None,
            });
        }
        if held {
            // A replay that only taught us ancestors: no event, but the record's leaves may change.
            if linked {
                self.touch(&key);
            }
            return Ok(false);
        }
        self.add_event(&key, r.rev, parent, r.deleted, &body)?;
        Ok(true)
    }

    fn touch(&mut self, key: &RecordKey) {
        if self.touched_set.insert(key.clone()) {
            self.touched.push(key.clone());
        }
    }

    fn add_event(
        &mut self,
        key: &RecordKey,
        rev: RevId,
        parent: Option<RevId>,
        deleted: bool,
        body: &Attributes,
    ) -> Result<()> {
        debug_assert!((1..=MAX_GENERATION).contains(&rev.generation), "a stored revision id must parse back");
        let seq = self.update_seq + 1;
        let chain = next_chain(&self.chain, seq, &key.0, &key.1, &rev, deleted);
        let json = serde_json::to_string(body).map_err(|e| Error::internal(format!("encoding a body: {e}")))?;
        self.update_seq = seq;
        self.chain = chain;
        let tree = self.trees.entry(key.clone()).or_default();
        tree.insert(rev, RevisionNode { parent, deleted, body: Some(body.clone()), seq: Some(seq) });
        self.revisions.push(StoredRevision {
            table: key.0.clone(),
            id: key.1.clone(),
            rev,
            parent,
            deleted,
            body: Some(json),
            event: Some((seq, chain)),
        });
        self.touch(key);
        Ok(())
    }

    /// The tables whose records this transaction touched.
    pub fn touched_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self.touched.iter().map(|k| k.0.clone()).collect();
        tables.sort();
        tables.dedup();
        tables
    }

    /// Finish: the write set with the new stored state of every touched record. The stored state is the
    /// winner's (keep-conflicts); a `merge-fields` table merges on read, so that what a record reads as
    /// never depends on when a policy change arrived relative to its revisions.
    pub fn finish(self) -> Result<WriteSet> {
        let mut states = Vec::with_capacity(self.touched.len());
        let mut views = Vec::new();
        let mut live_records = 0i64;
        // The JSON of every body written now, so a new winner's state reuses it.
        let written: HashMap<(&str, &str, RevId), &str> = self
            .revisions
            .iter()
            .filter_map(|r| Some(((r.table.as_str(), r.id.as_str(), r.rev), r.body.as_deref()?)))
            .collect();
        for key in &self.touched {
            let tree = &self.trees[key];
            let r = reconcile(tree, ReconcilePolicy::KeepConflicts)?;
            let seq = tree.iter().filter_map(|(_, n)| n.seq).max().expect("a touched record has an event");
            if key.0 == names::TABLES_TABLE && !r.deleted {
                views.push(key.1.clone());
            }
            if counts(key) {
                live_records += i64::from(!r.deleted) - i64::from(self.live_before.contains(key));
            }
            let body = match written.get(&(key.0.as_str(), key.1.as_str(), r.winner)) {
                Some(json) => (*json).to_owned(),
                None => serde_json::to_string(&r.body).map_err(|e| Error::internal(e.to_string()))?,
            };
            states.push(StoredState {
                table: key.0.clone(),
                id: key.1.clone(),
                rev: r.winner,
                deleted: r.deleted,
                body,
                leaves: r.leaves,
                conflicts: r.conflicts,
                field_conflicts: r.field_conflicts,
                seq,
            });
        }
        // States go in seq order so a backend writing them one by one keeps the feed ordered.
        states.sort_by_key(|s| s.seq);
        let head = (!self.revisions.iter().all(|r| r.event.is_none())).then_some((self.update_seq, self.chain));
        drop(written);
        Ok(WriteSet {
            revisions: merge_stubs(self.revisions),
            states,
            head,
            views,
            live_records,
            ..WriteSet::default()
        })
    }
}

/// Whether a record counts in `record_count`: table definitions do not.
fn counts(key: &RecordKey) -> bool {
    key.0 != names::TABLES_TABLE
}

/// Whether a record's winner is a live (not deleted) revision.
fn is_live(tree: &RevisionTree) -> bool {
    tree.winner().is_some_and(|w| tree.get(&w).is_some_and(|n| !n.deleted))
}

/// One stub entry per revision: a stub made earlier in the transaction and linked to its parent later
/// is stored once, with the parent (a backend may write all stubs in one statement).
fn merge_stubs(revisions: Vec<StoredRevision>) -> Vec<StoredRevision> {
    let mut at: HashMap<(String, String, RevId), usize> = HashMap::new();
    let mut out: Vec<StoredRevision> = Vec::with_capacity(revisions.len());
    for r in revisions {
        if r.event.is_none() {
            let key = (r.table.clone(), r.id.clone(), r.rev);
            if let Some(&i) = at.get(&key) {
                out[i].parent = out[i].parent.or(r.parent);
                continue;
            }
            at.insert(key, out.len());
        }
        out.push(r);
    }
    out
}

/// The local write rules of SPEC §4.1 on one tree: the revision returned to the client, and the new
/// revisions to store (none for a retry or a no-op).
fn plan_local(tree: &RevisionTree, w: &LocalWrite, policy: ReconcilePolicy) -> Result<(RevId, Vec<NewRevision>)> {
    let winner = tree.winner();
    let winner_deleted = winner.is_some_and(|r| tree.get(&r).is_some_and(|n| n.deleted));
    let (table, id) = (w.table.as_str(), w.id.as_str());
    let parent = match (w.parent, winner) {
        (Some(p), _) => Some(p),
        (None, None) if w.deleted => return Err(Error::not_found(format!("record {table}/{id} does not exist"))),
        (None, None) => None,
        // A delete without a rev deletes the current winner; a create on a deleted record extends the
        // tombstone's branch; resolving without a rev writes on the winner's branch.
        (None, Some(win)) if w.deleted || winner_deleted || !w.resolves.is_empty() => Some(win),
        (None, Some(win)) => {
            // A retried create is its own first revision.
            let first = NewRevision::on(table, id, None, w.deleted, w.attributes.clone());
            if tree.contains(&first.rev) {
                return Ok((first.rev, vec![]));
            }
            return Err(Error::conflict(format!("record {table}/{id} exists: name the revision you edit"), Some(win)));
        }
    };
    let main = NewRevision::on(table, id, parent, w.deleted, w.attributes.clone());
    if tree.contains(&main.rev) && w.resolves.is_empty() {
        return Ok((main.rev, vec![]));
    }
    let mut new = Vec::new();
    let mut result = main.rev;
    if let Some(p) = parent {
        let Some(node) = tree.get(&p).filter(|_| tree.is_leaf(&p)) else {
            return Err(Error::conflict(format!("revision {p} is not a current leaf of {table}/{id}"), winner));
        };
        let unchanged = node.deleted == w.deleted && node.body.as_ref() == Some(&w.attributes);
        if unchanged {
            result = p;
        } else if !tree.contains(&main.rev) {
            new.push(main);
        }
    } else {
        new.push(main);
    }
    // Branches to close: the ones named, and under merge-fields every other live leaf when the write
    // is based on the winner (the write carries the merged body).
    let mut close: Vec<RevId> = Vec::new();
    for r in &w.resolves {
        let live_leaf = tree.is_leaf(r) && tree.get(r).is_some_and(|n| !n.deleted);
        if !live_leaf || Some(*r) == parent {
            return Err(Error::conflict(
                format!("revision {r} is not a conflicting leaf of {table}/{id} that this write can resolve"),
                winner,
            ));
        }
        close.push(*r);
    }
    if policy == ReconcilePolicy::MergeFields && parent.is_some() && parent == winner {
        for r in tree.conflicts() {
            if !close.contains(&r) {
                close.push(r);
            }
        }
    }
    for leaf in close {
        new.push(NewRevision::on(table, id, Some(leaf), true, Attributes::new()));
    }
    Ok((result, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::genesis_chain;
    use outpost_api::{ErrorKind, Uuid, Value};

    fn head() -> Head {
        Head {
            update_seq: 0,
            chain: genesis_chain(Uuid::nil()),
            epochs: vec![outpost_api::Epoch { uuid: Uuid::nil(), start_seq: 1 }],
        }
    }

    fn body(n: i64) -> Attributes {
        Attributes::new().with("n", Value::Int(n))
    }

    fn write(parent: Option<RevId>, deleted: bool, attributes: Attributes) -> LocalWrite {
        LocalWrite { table: "t".into(), id: "x".into(), parent, deleted, attributes, resolves: vec![] }
    }

    struct Doc {
        planner: Planner,
    }

    impl Doc {
        fn new() -> Self {
            Doc { planner: Planner::new(&head(), HashMap::new()) }
        }
        fn put(&mut self, parent: Option<RevId>, n: i64) -> Result<RevId> {
            self.planner.local_write(&write(parent, false, body(n)), ReconcilePolicy::KeepConflicts)
        }
        fn tree(&self) -> &RevisionTree {
            self.planner.tree("t", "x").unwrap()
        }
    }

    #[test]
    fn local_write_rules() {
        let mut d = Doc::new();
        let r1 = d.put(None, 1).unwrap();
        assert_eq!(r1.generation, 1);
        // Create on a live record: conflict carrying the winner; the identical create is a retry.
        let e = d.put(None, 2).unwrap_err();
        assert_eq!((e.kind, e.current_rev), (ErrorKind::Conflict, Some(r1)));
        assert_eq!(d.put(None, 1).unwrap(), r1);
        let r2 = d.put(Some(r1), 2).unwrap();
        assert_eq!(r2.generation, 2);
        // Retry of the same edit: same rev, no new event. Stale parent: conflict.
        let events = d.planner.events();
        assert_eq!(d.put(Some(r1), 2).unwrap(), r2);
        assert_eq!(d.planner.events(), events);
        assert_eq!(d.put(Some(r1), 3).unwrap_err().current_rev, Some(r2));
        // No-op returns the parent.
        assert_eq!(d.put(Some(r2), 2).unwrap(), r2);
        assert_eq!(d.planner.events(), events);
        // Delete without rev deletes the winner; a create then extends the tombstone's branch.
        let del = d.planner.local_write(&write(None, true, Attributes::new()), ReconcilePolicy::KeepConflicts).unwrap();
        assert_eq!(del.generation, 3);
        assert!(d.tree().get(&del).unwrap().deleted);
        let r4 = d.put(None, 4).unwrap();
        assert_eq!(r4.generation, 4);
        assert_eq!(d.tree().winner(), Some(r4));
        assert_eq!(d.planner.events(), 4);
    }

    #[test]
    fn resolves_and_merge_fields_close_branches() {
        for (policy, resolves) in [(ReconcilePolicy::KeepConflicts, true), (ReconcilePolicy::MergeFields, false)] {
            let mut d = Doc::new();
            let r1 = d.put(None, 1).unwrap();
            let a = d.put(Some(r1), 2).unwrap();
            // A second branch from r1 arrives by replication.
            let b_body = body(3);
            let b = revision_id("t", "x", Some(&r1), false, &b_body);
            d.planner
                .replicated(&RevisionData {
                    table: "t".into(),
                    id: "x".into(),
                    rev: b,
                    deleted: false,
                    attributes: Some(b_body),
                    ancestry: vec![r1],
                })
                .unwrap();
            assert_eq!(d.tree().conflicts().len(), 1);
            let winner = d.tree().winner().unwrap();
            let loser = if winner == a { b } else { a };
            let mut w = write(Some(winner), false, body(9));
            if resolves {
                w.resolves = vec![loser];
            }
            d.planner.local_write(&w, policy).unwrap();
            assert!(d.tree().conflicts().is_empty(), "{policy:?}");
        }
    }

    #[test]
    fn replicated_revisions_are_verified() {
        let mut d = Doc::new();
        let b = body(1);
        let rev = revision_id("t", "x", None, false, &b);
        let ok = RevisionData {
            table: "t".into(),
            id: "x".into(),
            rev,
            deleted: false,
            attributes: Some(b),
            ancestry: vec![],
        };
        assert!(d.planner.replicated(&ok).unwrap());
        assert!(!d.planner.replicated(&ok).unwrap(), "replay is a no-op");
        let bad = RevisionData { attributes: Some(body(2)), ..ok.clone() };
        assert_eq!(d.planner.replicated(&bad).unwrap_err().kind, ErrorKind::Corrupt);
        // Ancestors become stubs; a later body fills the stub in as a new event.
        let b3 = body(3);
        let p2 = RevId::new(2, [7; 16]);
        let r3 = revision_id("t", "y", Some(&p2), false, &b3);
        let deep = RevisionData {
            table: "t".into(),
            id: "y".into(),
            rev: r3,
            deleted: false,
            attributes: Some(b3),
            ancestry: vec![p2, RevId::new(1, [8; 16])],
        };
        assert!(d.planner.replicated(&deep).unwrap());
        let tree = d.planner.tree("t", "y").unwrap();
        assert!(tree.get(&p2).unwrap().is_stub());
        assert_eq!(tree.ancestry(&r3).len(), 2);
        let gap = RevisionData { ancestry: vec![RevId::new(1, [8; 16])], ..deep };
        assert_eq!(d.planner.replicated(&gap).unwrap_err().kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn a_stub_learns_its_parent_from_a_later_ancestry() {
        let mut d = Doc::new();
        let revision = |parent: Option<RevId>, n: i64, ancestry: Vec<RevId>| {
            let b = body(n);
            let rev = revision_id("t", "x", parent.as_ref(), false, &b);
            RevisionData { table: "t".into(), id: "x".into(), rev, deleted: false, attributes: Some(b), ancestry }
        };
        let r1 = revision(None, 1, vec![]).rev;
        let r2 = revision(Some(r1), 2, vec![r1]).rev;
        let r3 = revision(Some(r2), 3, vec![r2, r1]).rev;
        // r4 arrives with its ancestry truncated at r3, which becomes a stub of unknown parent...
        let r4 = revision(Some(r3), 4, vec![r3]);
        assert!(d.planner.replicated(&r4).unwrap());
        // ...then a sibling with the whole ancestry: r3 learns its parent, so r2 is not a leaf.
        let sibling = revision(Some(r3), 5, vec![r3, r2, r1]);
        assert!(d.planner.replicated(&sibling).unwrap());
        let tree = d.planner.tree("t", "x").unwrap();
        assert_eq!(tree.get(&r3).unwrap().parent, Some(r2));
        let mut leaves = vec![r4.rev, sibling.rev];
        leaves.sort();
        assert_eq!(tree.leaves(), leaves);
        let ws = d.planner.finish().unwrap();
        let linked: Vec<(RevId, Option<RevId>)> =
            ws.revisions.iter().filter(|r| r.event.is_none()).map(|r| (r.rev, r.parent)).collect();
        // The stub made and linked in this transaction is stored once, with its parent.
        assert_eq!(linked, vec![(r3, Some(r2)), (r2, Some(r1)), (r1, None)], "the new link is stored");
        assert_eq!(ws.states[0].leaves, leaves);
    }

    #[test]
    fn events_get_consecutive_seqs_and_a_folded_chain() {
        let mut d = Doc::new();
        let r1 = d.put(None, 1).unwrap();
        let r2 = d.put(Some(r1), 2).unwrap();
        let ws = d.planner.finish().unwrap();
        let g = genesis_chain(Uuid::nil());
        let c1 = next_chain(&g, 1, "t", "x", &r1, false);
        let c2 = next_chain(&c1, 2, "t", "x", &r2, false);
        assert_eq!(ws.revisions.iter().map(|r| r.event).collect::<Vec<_>>(), vec![Some((1, c1)), Some((2, c2))]);
        assert_eq!(ws.head, Some((2, c2)));
        assert_eq!(ws.states.len(), 1);
        assert_eq!((ws.states[0].rev, ws.states[0].seq), (r2, 2));
    }
}
