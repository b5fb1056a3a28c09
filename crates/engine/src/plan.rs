//! Planning a write transaction: what local writes (SPEC §4.1) and replicated writes (§4.2) add to
//! the revision trees, which seqs and chain hashes the new revision events get (§5), and the new
//! reconciled states. Pure: it works on trees the storage loaded and yields a [`WriteSet`].

use std::collections::HashMap;

use ahash::{HashMap as FastMap, HashMapExt as _, HashSet as FastSet};

use outpost_api::{
    names, Body, ChainHash, Digest, Error, ReconcilePolicy, Result, RevId, TableDef, WriteResult, MAX_GENERATION,
};

use crate::foreign::Class;
use crate::reconcile::outcome;
use crate::storage::{Head, RecordKey, StoredRevision, StoredState, WriteSet};
use crate::tree::{RevisionNode, RevisionTree};
use crate::validate::VerifiedRevision;

mod local;

use local::plan_local;
pub(crate) use local::LocalWrite;

/// What a finished plan no longer needs ([`Planner::finish_apart`]).
pub struct Spent(#[allow(dead_code, reason = "held only to be dropped")] FastMap<RecordKey, Planned>);

/// A record's tree as planned (each body as its stored JSON: the planner reads a body's values only
/// where a rule needs them), and whether the transaction touched it.
struct Planned {
    tree: RevisionTree<String>,
    touched: bool,
    /// Whether the record had revisions, so a stored state, before the transaction.
    stored: bool,
    /// Whether a part cut off its writes ([`Planner::cut`]): its events' bodies have left its tree,
    /// so nothing more may be planned for it.
    closed: bool,
}

impl Planned {
    fn new() -> Self {
        Planned { tree: RevisionTree::default(), touched: false, stored: false, closed: false }
    }
}

/// Accumulates the writes of one transaction.
pub struct Planner {
    /// The head the part being planned started from: the transaction's, or where the last part cut
    /// off ([`Planner::cut`]). Events after it are this part's; those up to it are stored.
    part: (u64, ChainHash),
    /// Whether a part was cut off (with something to store).
    cut: bool,
    update_seq: u64,
    chain: ChainHash,
    /// Keyed by record keys that peers choose: a keyed hash (ahash's random state), which a peer
    /// cannot aim collisions at, several times cheaper than SipHash.
    trees: FastMap<RecordKey, Planned>,
    /// Records whose winner was live before the transaction (for the live-record count).
    live_before: FastSet<RecordKey>,
    /// Touched records in first-touch order.
    touched: Vec<RecordKey>,
    revisions: Vec<StoredRevision>,
    /// Whether an event fills a stub in ([`WriteSet::fills_stubs`]).
    fills_stubs: bool,
    /// Bodies of pending revisions that arrived ([`WriteSet::fill_bodies`]).
    fill_bodies: Vec<(u64, String)>,
    /// Tables that foreign revisions were planned into, which must be open to CouchDB peers.
    foreign_tables: Vec<String>,
}

impl Planner {
    /// Start from the head and the trees of every record the transaction may touch (`records` of
    /// them, whose trees a new record lacks: the maps are sized for them once).
    pub fn new(head: &Head, loaded: HashMap<RecordKey, RevisionTree<String>>, records: usize) -> Self {
        let live_before =
            loaded.iter().filter(|(key, tree)| counts(key) && is_live(tree)).map(|(key, _)| key.clone()).collect();
        let mut trees = FastMap::with_capacity(records.max(loaded.len()));
        trees.extend(loaded.into_iter().map(|(key, tree)| {
            let stored = !tree.is_empty();
            (key, Planned { tree, touched: false, stored, closed: false })
        }));
        Planner {
            part: (head.update_seq, head.chain),
            cut: false,
            update_seq: head.update_seq,
            chain: head.chain,
            trees,
            live_before,
            touched: Vec::with_capacity(records),
            revisions: Vec::with_capacity(records),
            fills_stubs: false,
            fill_bodies: Vec::new(),
            foreign_tables: Vec::new(),
        }
    }

    /// The tables that foreign revisions were planned into so far: each needs its definition's
    /// record (`_tables`, id = the table) among the trees the planner started from, for [`Planner::finish`].
    pub fn foreign_tables(&self) -> &[String] {
        &self.foreign_tables
    }

    /// The tree of a record as planned so far.
    pub fn tree(&self, table: &str, id: &str) -> Option<&RevisionTree<String>> {
        self.trees.get(&(table.to_owned(), id.to_owned())).map(|p| &p.tree)
    }

    /// Revision events planned since the last part was cut off (or the plan began).
    pub fn events(&self) -> usize {
        self.revisions.iter().filter(|r| r.event.is_some()).count()
    }

    /// Plan a local write; returns the revision the caller gets back. On error nothing is planned.
    pub(crate) fn local_write(&mut self, mut w: LocalWrite, policy: ReconcilePolicy) -> Result<WriteResult> {
        // The record's key moves out of the write: it is the planner's from here on.
        let key = (std::mem::take(&mut w.table), std::mem::take(&mut w.id));
        let empty = RevisionTree::default();
        let planned = self.trees.get(&key);
        if planned.is_some_and(|p| p.closed) {
            return Err(closed(&key));
        }
        let tree = planned.map_or(&empty, |p| &p.tree);
        let (result, new) = plan_local(tree, &key, &w, policy)?;
        // Checked before anything is planned: an id past the largest generation could not be read back.
        if let Some(n) = new.iter().find(|n| n.rev.generation > MAX_GENERATION) {
            return Err(Error::invalid(format!(
                "record {}/{} has reached the largest generation ({MAX_GENERATION}) on the branch of {}; it takes \
                 no further revision there",
                key.0,
                key.1,
                n.parent.map_or_else(String::new, |p| p.to_string())
            )));
        }
        // The write's body moves into the tree: at most one new revision is the write's own.
        let mut body = Some(w.encoded.into_json());
        for n in new {
            let own = if n.own { body.take() } else { None };
            let body = own.unwrap_or_else(|| "{}".to_owned());
            self.add_event(&key, n.rev, n.parent, n.deleted, Some(body), None)?;
            if n.replaces.is_some() {
                self.supersede(n.replaces);
            }
        }
        let (table, id) = key;
        Ok(WriteResult { table, id, rev: result })
    }

    /// Plan one replicated revision (SPEC §4.2), verified by [`crate::validate::replicated`]: add
    /// missing ancestors as stubs, add it (or fill in its stub). Returns whether it was a new revision
    /// event; a known revision is a no-op.
    pub fn replicated(&mut self, r: VerifiedRevision) -> Result<bool> {
        let (parent, rev, deleted, foreign) = (r.parent(), r.rev(), r.deleted(), r.foreign());
        let (table, id, body, ancestry) = r.into_parts();
        let body = body.map(Body::into_json);
        if foreign.is_some() && !self.foreign_tables.contains(&table) {
            // Its table's definition is checked when the plan is finished, in a tree a part may have
            // taken bodies from (`part_lengths` cuts no batch that holds a foreign revision).
            if self.cut {
                return Err(Error::internal("a foreign revision was planned after a part was cut off"));
            }
            self.foreign_tables.push(table.clone());
        }
        let key = (table, id);
        let planned = self.trees.entry(key.clone()).or_insert_with(Planned::new);
        if planned.closed {
            return Err(closed(&key));
        }
        let tree = &mut planned.tree;
        // A pending revision (replayed without its body) whose body arrives, verified, and of the
        // class its event's chain hash committed to: it is stored into the revision's event. Any
        // other revision held with an event is a no-op.
        if let (Some(node), Some(json)) = (tree.get(&rev), &body) {
            if node.body.is_none() && !node.deleted && node.foreign == foreign && tree.is_pending(&rev) {
                let seq = node.seq.expect("a pending revision has an event");
                // An event planned in this part takes its body when the part is cut off; one stored
                // before (also by an earlier part of this transaction) has it filled in.
                if seq <= self.part.0 {
                    self.fill_bodies.push((seq, json.clone()));
                }
                tree.get_mut(&rev).expect("held").body = body;
                self.touch(&key);
                return Ok(false);
            }
        }
        // One body per id (SPEC §3): a body of the class `Class::replaced_by` prefers — native over
        // foreign, the smaller digest between two foreign ones — replaces the one held, as a new
        // revision event; the old event stays in the history without its body (superseded).
        // A native body always (its id commits to its parent and tombstone flag); a foreign one only
        // over one of the same parent and flag (no digest ground smaller moves a revision). Bodiless:
        // a replay of compacted history, as the source stored it.
        let replaces = match tree.get(&rev) {
            Some(node)
                if !node.is_stub()
                    && Class::of(node.foreign).replaced_by(Class::of(foreign))
                    && (foreign.is_none() || (node.parent == parent && node.deleted == deleted)) =>
            {
                node.seq
            }
            _ => None,
        };
        if let Some(old) = replaces {
            tracing::warn!(table = %key.0, id = %key.1, %rev, superseded_seq = old,
                native = foreign.is_none(), "a revision's body replaces the foreign one held under its id (SPEC §3)");
        }
        let parent = parent.or_else(|| tree.get(&rev).and_then(|n| n.parent));
        let held = replaces.is_none() && tree.get(&rev).is_some_and(|n| !n.is_stub());
        // Ancestors we lack become stubs, each linked to the next one up when the ancestry says. An
        // ancestor held without its parent (an earlier ancestry was truncated there) gets linked now:
        // otherwise its own ancestors would look like separate leaves.
        let mut stubs = Vec::new();
        for (i, a) in ancestry.iter().enumerate() {
            let up = ancestry.get(i + 1).copied();
            match tree.get_mut(a) {
                None => {
                    tree.insert(*a, RevisionNode::stub(up));
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
                table: key.0.clone(),
                id: key.1.clone(),
                rev,
                parent: up,
                deleted: false,
                body: None,
                event: None,
                foreign: None,
                replaces: None,
                superseded: false,
            });
        }
        if held {
            // A replay that only taught us ancestors: no event, but the record's leaves may change.
            if linked {
                self.touch(&key);
            }
            return Ok(false);
        }
        self.add_event(&key, rev, parent, deleted, body, foreign)?;
        if replaces.is_some() {
            self.supersede(replaces);
        }
        Ok(true)
    }

    /// The event just planned replaces the body stored by event `old` (SPEC §3): it names it; an
    /// `old` planned earlier in this transaction (a replay brings both) is stored superseded.
    fn supersede(&mut self, old: Option<u64>) {
        let last = self.revisions.last_mut().expect("the event just planned");
        last.replaces = old;
        if let Some(old) = old.filter(|seq| *seq > self.part.0) {
            let planned = self.revisions.iter_mut().find(|r| r.event.is_some_and(|(seq, _)| seq == old));
            let planned = planned.expect("an event of this transaction is planned");
            planned.superseded = true;
            planned.body = None;
        }
    }

    /// Mark a record (whose tree is planned) as touched.
    fn touch(&mut self, key: &RecordKey) {
        let planned = self.trees.get_mut(key).expect("a touched record has a planned tree");
        if !planned.touched {
            planned.touched = true;
            self.touched.push(key.clone());
        }
    }

    fn add_event(
        &mut self,
        key: &RecordKey,
        rev: RevId,
        parent: Option<RevId>,
        deleted: bool,
        body: Option<String>,
        foreign: Option<Digest>,
    ) -> Result<()> {
        debug_assert!((1..=MAX_GENERATION).contains(&rev.generation), "a stored revision id must parse back");
        // Invariant: a revision is one generation above its parent (generation chains in trees).
        debug_assert!(parent.is_none_or(|p| p.generation + 1 == rev.generation), "{rev} is not a child of {parent:?}");
        let seq = self.update_seq + 1;
        let chain = self.chain.next_event(seq, (&key.0, &key.1, &rev, deleted), foreign.as_ref());
        self.update_seq = seq;
        self.chain = chain;
        let planned = match self.trees.get_mut(key) {
            Some(planned) => planned,
            None => self.trees.entry(key.clone()).or_insert_with(Planned::new),
        };
        let tree = &mut planned.tree;
        self.fills_stubs |= tree.get(&rev).is_some_and(RevisionNode::is_stub);
        // The body is the tree's until the plan is finished, then the write set's (`finish_apart`).
        tree.insert(rev, RevisionNode { parent, deleted, body, seq: Some(seq), foreign });
        if !planned.touched {
            planned.touched = true;
            self.touched.push(key.clone());
        }
        self.revisions.push(StoredRevision {
            table: key.0.clone(),
            id: key.1.clone(),
            rev,
            parent,
            deleted,
            body: None,
            event: Some((seq, chain)),
            foreign,
            replaces: None,
            superseded: false,
        });
        Ok(())
    }

    /// Whether `table` takes foreign revisions (SPEC §3, §17): a revision of its definition (stored, or
    /// arriving in this transaction) says `couch: true`. Any revision, not only the current one: a
    /// table that was once open to CouchDB peers holds their revisions for good, and they must
    /// replicate to a peer that learns of the table only now, after it was closed or deleted.
    /// Forbidden otherwise. (The CouchDB routes themselves serve only tables open now.)
    fn takes_foreign(&self, table: &str) -> Result<()> {
        let tree = self.tree(names::TABLES_TABLE, table).filter(|t| !t.is_empty());
        let Some(tree) = tree else {
            return Err(Error::forbidden(format!(
                "table {table:?} is not defined here: foreign revisions (made by a CouchDB-protocol peer) go only into \
                 a table whose definition says couch: true"
            )));
        };
        let mut opened = false;
        for (rev, node) in tree.iter() {
            let Some(json) = &node.body else { continue };
            let body = crate::storage::stored::body(json, names::TABLES_TABLE, table, rev)?;
            opened |= TableDef::from_record(table, *rev, &body).is_ok_and(|def| def.couch);
        }
        if !opened {
            return Err(Error::forbidden(format!(
                "table {table:?} is not open to CouchDB peers: foreign revisions (made by a CouchDB-protocol peer) go \
                 only into a table whose definition says couch: true"
            )));
        }
        Ok(())
    }

    /// Finish: the write set with the new stored state of every touched record. The stored state is the
    /// winner's (keep-conflicts); a `merge-fields` table merges on read, so that what a record reads as
    /// never depends on when a policy change arrived relative to its revisions.
    pub fn finish(self) -> Result<WriteSet> {
        self.finish_apart().map(|(writes, _)| writes)
    }

    /// [`Planner::finish`], and what the plan no longer needs, for the caller to free where it costs
    /// the write nothing (`storage::drop_aside`): the records' trees with every body they hold, whose
    /// freeing was a tenth of a replicated write of new records. After parts were cut off
    /// ([`Planner::cut`]), the write set is what was planned since, and it carries the head even
    /// when that did not move since: the commit after the parts is never skipped as empty, and it
    /// wakes those who wait for the feed to move. With nothing planned at all, it is empty.
    pub fn finish_apart(mut self) -> Result<(WriteSet, Spent)> {
        for table in &self.foreign_tables {
            self.takes_foreign(table)?;
        }
        let mut writes = self.take()?;
        if self.cut && writes.head.is_none() {
            writes.head = Some((self.update_seq, self.chain));
        }
        Ok((writes, Spent(self.trees)))
    }

    /// The write set of what was planned since the transaction began or the last part was cut off,
    /// for the caller to store in the transaction while planning goes on; None when no part may be
    /// cut off (a foreign revision was planned: its table's definition is checked when the plan is
    /// finished). The records it touched are closed: planning anything more for one of them fails,
    /// so each part must hold every revision of its records ([`part_lengths`]).
    pub fn cut(&mut self) -> Result<Option<WriteSet>> {
        if !self.foreign_tables.is_empty() {
            return Ok(None);
        }
        let writes = self.take()?;
        if writes.is_empty() {
            // Nothing planned since (known revisions only): nothing to store, no record closed.
            return Ok(None);
        }
        self.cut = true;
        Ok(Some(writes))
    }

    /// The write set of what was planned since the transaction began or the last part was cut off:
    /// the new stored state of every record touched since, and the events, stubs and bodies planned
    /// since.
    fn take(&mut self) -> Result<WriteSet> {
        let touched = std::mem::take(&mut self.touched);
        let mut revisions = std::mem::take(&mut self.revisions);
        let fill_bodies = std::mem::take(&mut self.fill_bodies);
        let fills_stubs = std::mem::replace(&mut self.fills_stubs, false);
        let mut states = Vec::with_capacity(touched.len());
        let mut views = Vec::new();
        let mut live_records = 0i64;
        // Each touched record's key moves into its state.
        for key in touched {
            let planned = self.trees.get_mut(&key).expect("a touched record has a planned tree");
            (planned.touched, planned.closed) = (false, true);
            let (tree, stored) = (&planned.tree, planned.stored);
            let (winner, leaves, conflicts) = match outcome(tree) {
                Ok(r) => r,
                // Every revision is pending (a compacted one replayed before the revision after it):
                // the record has no state until that one arrives.
                Err(_) if tree.winner().is_none() => continue,
                Err(e) => return Err(e),
            };
            let seq = tree.iter().filter_map(|(_, n)| n.seq).max().expect("a touched record has an event");
            let node = tree.get(&winner).expect("the winner is in the tree");
            let deleted = node.deleted;
            if key.0 == names::TABLES_TABLE && !deleted {
                views.push(key.1.clone());
            }
            if counts(&key) {
                live_records += i64::from(!deleted) - i64::from(self.live_before.contains(&key));
            }
            // A live record's body is its winner's stored JSON (keep-conflicts: a merge-fields table
            // merges on read), which the winner's event holds: the state names it, uncopied. A
            // deleted record's body is `{}`, whatever its tombstone carries.
            let body = match &node.body {
                _ if deleted => "{}".to_owned(),
                Some(_) => String::new(),
                None => return Err(Error::corrupt(format!("winning revision {winner} has no body"))),
            };
            let (table, id) = key;
            let state =
                StoredState { table, id, rev: winner, deleted, body, leaves, conflicts, field_conflicts: vec![], seq };
            states.push((state, !stored));
        }
        // Each event's body moves from its record's tree into the write set, uncopied: the states
        // above read them there (a superseded event is stored without its body).
        for r in revisions.iter_mut().filter(|r| r.event.is_some() && !r.superseded) {
            let key = (std::mem::take(&mut r.table), std::mem::take(&mut r.id));
            let node = self.trees.get_mut(&key).and_then(|p| p.tree.get_mut(&r.rev));
            r.body = node.and_then(|n| n.body.take());
            (r.table, r.id) = key;
        }
        // States go in seq order so a backend writing them one by one keeps the feed ordered.
        states.sort_by_key(|(s, _)| s.seq);
        let (states, new_states): (Vec<StoredState>, Vec<bool>) = states.into_iter().unzip();
        let (start, now) = (self.part, (self.update_seq, self.chain));
        let head = (now.0 != start.0).then_some(now);
        self.part = now;
        let writes = WriteSet {
            revisions: merge_stubs(revisions),
            fills_stubs,
            states,
            new_states,
            head,
            views,
            live_records,
            fill_bodies,
            ..WriteSet::default()
        };
        // Invariant: seqs are gap-free from the head on, and each chain hash extends the one before.
        debug_assert!(extends(&writes, start), "the events of a write set do not extend its head");
        // Invariant: one event per revision, and one stub entry per revision.
        debug_assert!(each_revision_once(&writes), "a write set stores a revision twice");
        Ok(writes)
    }
}

/// A write's record and whether it is a foreign revision, or None for one that plans nothing (a
/// local write refused before planning): what [`part_lengths`] cuts a batch by.
pub type PartKey<I> = fn(&I) -> Option<(&str, &str, bool)>;

/// How to cut a batch of writes, in planning order, into parts of about `size` for [`Planner::cut`]:
/// the length of each part, every write of a record in the same part. `keys` gives each write's
/// record and whether it is a foreign revision, or None for one that plans nothing (a local write
/// refused before planning). One part when any revision is foreign.
pub fn part_lengths<'k>(keys: impl IntoIterator<Item = Option<(&'k str, &'k str, bool)>>, size: usize) -> Vec<usize> {
    let keys: Vec<Option<(&str, &str, bool)>> = keys.into_iter().collect();
    if keys.len() <= size || keys.iter().flatten().any(|k| k.2) {
        return vec![keys.len()];
    }
    let mut last: FastMap<(&str, &str), usize> = FastMap::with_capacity(keys.len());
    for (i, (table, id, _)) in keys.iter().enumerate().filter_map(|(i, k)| Some((i, (*k)?))) {
        last.insert((table, id), i);
    }
    let (mut lengths, mut start, mut reach) = (Vec::new(), 0, 0);
    for (i, key) in keys.iter().enumerate() {
        // A cut after `i` splits no record when no write up to it has a later one of its record.
        if let Some((table, id, _)) = key {
            reach = reach.max(last[&(*table, *id)]);
        }
        if reach <= i && i + 1 - start >= size {
            lengths.push(i + 1 - start);
            start = i + 1;
        }
    }
    if start < keys.len() {
        lengths.push(keys.len() - start);
    }
    lengths
}

/// The error for planning more for a record a part closed.
fn closed(key: &RecordKey) -> Error {
    Error::internal(format!("record {}/{} was planned again after a part cut off its writes", key.0, key.1))
}

/// Whether the events of `writes` take the seqs after `start` in order, each chain hash folding the
/// one before, ending at the write set's head.
fn extends(writes: &WriteSet, start: (u64, ChainHash)) -> bool {
    let mut at = start;
    for r in &writes.revisions {
        if let Some((seq, chain)) = r.event {
            if seq != at.0 + 1
                || chain != at.1.next_event(seq, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref())
            {
                return false;
            }
            at = (seq, chain);
        }
    }
    writes.head.map_or(at == start, |h| h == at)
}

/// Whether each revision has at most one event entry and at most one stub entry, a stub never after
/// its event (backends may write stubs and events in one statement each).
fn each_revision_once(writes: &WriteSet) -> bool {
    let mut events = FastSet::default();
    let mut stubs = FastSet::default();
    writes.revisions.iter().all(|r| {
        let key = (r.table.as_str(), r.id.as_str(), r.rev);
        match r.event {
            // The body a later event of the set replaces: stored apart, as superseded.
            Some(_) if r.superseded => true,
            Some(_) => events.insert(key),
            None => !events.contains(&key) && stubs.insert(key),
        }
    })
}

/// Whether a record counts in `record_count`: table definitions do not.
fn counts(key: &RecordKey) -> bool {
    counts_table(&key.0)
}

/// Whether the live records of `table` count in `record_count`: every table but `_tables`.
pub(crate) fn counts_table(table: &str) -> bool {
    table != names::TABLES_TABLE
}

/// Whether a record's winner is a live (not deleted) revision.
fn is_live<B>(tree: &RevisionTree<B>) -> bool {
    tree.winner().is_some_and(|w| tree.get(&w).is_some_and(|n| !n.deleted))
}

/// One stub entry per revision: a stub made earlier in the transaction and linked to its parent later
/// is stored once, with the parent (a backend may write all stubs in one statement).
fn merge_stubs(revisions: Vec<StoredRevision>) -> Vec<StoredRevision> {
    let mut at: FastMap<(String, String, RevId), usize> = FastMap::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::revision_id;
    use crate::hash::{genesis_chain, next_chain};
    use crate::validate::replicated;
    use outpost_api::{Attributes, ErrorKind, Limits, RevisionData, Uuid, Value};

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
        let encoded = crate::validate::encoded(&attributes, &Limits::default()).expect("a small body");
        LocalWrite { table: "t".into(), id: "x".into(), parent, deleted, attributes, encoded, resolves: vec![] }
    }

    fn verified(r: RevisionData) -> VerifiedRevision {
        replicated(r, &Limits::default()).expect("a sound revision")
    }

    struct Doc {
        planner: Planner,
    }

    impl Doc {
        fn new() -> Self {
            Doc { planner: Planner::new(&head(), HashMap::new(), 1) }
        }
        fn put(&mut self, parent: Option<RevId>, n: i64) -> Result<RevId> {
            self.planner.local_write(write(parent, false, body(n)), ReconcilePolicy::KeepConflicts).map(|w| w.rev)
        }
        fn tree(&self) -> &RevisionTree<String> {
            self.planner.tree("t", "x").unwrap()
        }
    }

    /// What a step of [`local_write_rules`] writes: a put of body `n` or a delete, on the revision a
    /// step returned (or none).
    enum Op {
        Put(Option<usize>, i64),
        Delete(Option<usize>),
    }

    /// What it must give: a new revision of this generation, the revision an earlier step returned
    /// (nothing written), a conflict carrying that step's revision, or NotFound.
    #[derive(Debug, PartialEq)]
    enum Expect {
        New(u64),
        Same(usize),
        Conflict(usize),
        NotFound,
    }

    #[test]
    fn local_write_rules() {
        use Expect::*;
        use Op::*;
        let steps: &[(&str, Op, Expect)] = &[
            ("a delete of a missing record", Delete(None), NotFound),
            ("a create", Put(None, 1), New(1)),
            ("a create on a live record conflicts with the winner", Put(None, 2), Conflict(1)),
            ("the identical create is a retry", Put(None, 1), Same(1)),
            ("an edit", Put(Some(1), 2), New(2)),
            ("a retried edit", Put(Some(1), 2), Same(4)),
            ("an edit of a stale revision conflicts with the winner", Put(Some(1), 3), Conflict(4)),
            ("an edit that changes nothing returns its parent", Put(Some(4), 2), Same(4)),
            ("a delete without rev deletes the winner", Delete(None), New(3)),
            ("a create after a delete extends the tombstone's branch", Put(None, 4), New(4)),
            ("a retried delete returns its tombstone", Delete(Some(4)), Same(8)),
            ("an edit of a revision below a tombstone conflicts", Put(Some(4), 5), Conflict(9)),
        ];
        let mut d = Doc::new();
        let mut revs: Vec<Option<RevId>> = Vec::new();
        for (what, op, expect) in steps {
            let events = d.planner.events();
            let (parent, deleted, attributes) = match op {
                Put(p, n) => (p.map(|i| revs[i].expect("the step wrote")), false, body(*n)),
                Delete(p) => (p.map(|i| revs[i].expect("the step wrote")), true, Attributes::new()),
            };
            let got = d
                .planner
                .local_write(write(parent, deleted, attributes), ReconcilePolicy::KeepConflicts)
                .map(|w| w.rev);
            let seen = match &got {
                Ok(rev) if d.planner.events() > events => New(rev.generation),
                Ok(rev) => Same(revs.iter().position(|r| *r == Some(*rev)).expect("an earlier revision")),
                Err(e) if e.kind == ErrorKind::Conflict => {
                    Conflict(revs.iter().position(|r| *r == e.current_rev).expect("the winner"))
                }
                Err(e) if e.kind == ErrorKind::NotFound => NotFound,
                Err(e) => panic!("{what}: {e}"),
            };
            assert_eq!(&seen, expect, "{what}");
            revs.push(got.ok());
        }
        assert_eq!(d.tree().winner(), revs[9]);
        assert!(d.tree().get(&revs[8].unwrap()).unwrap().deleted);
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
            let branch = RevisionData {
                table: "t".into(),
                id: "x".into(),
                rev: b,
                deleted: false,
                attributes: Some(Body::new(&b_body)),
                ancestry: vec![r1],
                foreign: None,
            };
            d.planner.replicated(verified(branch)).unwrap();
            assert_eq!(d.tree().conflicts().len(), 1);
            let winner = d.tree().winner().unwrap();
            let loser = if winner == a { b } else { a };
            // Resolving the winner itself, or a revision that is not a leaf, is refused.
            for wrong in [winner, r1] {
                let mut w = write(Some(winner), false, body(9));
                w.resolves = vec![wrong];
                assert_eq!(d.planner.local_write(w, policy).unwrap_err().kind, ErrorKind::Conflict, "{wrong}");
            }
            let mut w = write(Some(winner), false, body(9));
            if resolves {
                // Named twice, closed once.
                w.resolves = vec![loser, loser];
            }
            let events = d.planner.events();
            d.planner.local_write(w, policy).unwrap();
            assert!(d.tree().conflicts().is_empty(), "{policy:?}");
            assert_eq!(d.planner.events(), events + 2, "the edit and one tombstone on the other branch");
        }
    }

    #[test]
    fn replicated_revisions_are_planned_once() {
        let mut d = Doc::new();
        let b = body(1);
        let rev = revision_id("t", "x", None, false, &b);
        let ok = verified(RevisionData {
            table: "t".into(),
            id: "x".into(),
            rev,
            deleted: false,
            attributes: Some(Body::new(&b)),
            ancestry: vec![],
            foreign: None,
        });
        assert!(d.planner.replicated(ok.clone()).unwrap());
        assert!(!d.planner.replicated(ok).unwrap(), "replay is a no-op");
        // Ancestors become stubs; a later body fills the stub in as a new event.
        let b3 = body(3);
        let p2 = RevId::new(2, [7; 16]);
        let r3 = revision_id("t", "y", Some(&p2), false, &b3);
        let deep = verified(RevisionData {
            table: "t".into(),
            id: "y".into(),
            rev: r3,
            deleted: false,
            attributes: Some(Body::new(&b3)),
            ancestry: vec![p2, RevId::new(1, [8; 16])],
            foreign: None,
        });
        assert!(d.planner.replicated(deep).unwrap());
        let tree = d.planner.tree("t", "y").unwrap();
        assert!(tree.get(&p2).unwrap().is_stub());
        assert_eq!(tree.ancestry(&r3).len(), 2);
    }

    #[test]
    fn a_stub_learns_its_parent_from_a_later_ancestry() {
        let mut d = Doc::new();
        let revision = |parent: Option<RevId>, n: i64, ancestry: Vec<RevId>| {
            let b = body(n);
            let rev = revision_id("t", "x", parent.as_ref(), false, &b);
            verified(RevisionData {
                table: "t".into(),
                id: "x".into(),
                rev,
                deleted: false,
                attributes: Some(Body::new(&b)),
                ancestry,
                foreign: None,
            })
        };
        let r1 = revision(None, 1, vec![]).rev();
        let r2 = revision(Some(r1), 2, vec![r1]).rev();
        let r3 = revision(Some(r2), 3, vec![r2, r1]).rev();
        // r4 arrives with its ancestry truncated at r3, which becomes a stub of unknown parent...
        let r4 = revision(Some(r3), 4, vec![r3]);
        assert!(d.planner.replicated(r4.clone()).unwrap());
        // ...then a sibling with the whole ancestry: r3 learns its parent, so r2 is not a leaf.
        let sibling = revision(Some(r3), 5, vec![r3, r2, r1]);
        assert!(d.planner.replicated(sibling.clone()).unwrap());
        let tree = d.planner.tree("t", "x").unwrap();
        assert_eq!(tree.get(&r3).unwrap().parent, Some(r2));
        let mut leaves = vec![r4.rev(), sibling.rev()];
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
        assert_eq!(ws.live_records, 1);
    }

    #[test]
    fn states_of_records_that_had_none_are_marked_new() {
        // In a first transaction x is created; in a second, loaded with x's tree, x is updated and y
        // is created.
        let mut d = Doc::new();
        let r1 = d.put(None, 1).unwrap();
        let ws = d.planner.finish().unwrap();
        assert_eq!(ws.new_states, [true]);
        let mut tree = RevisionTree::default();
        tree.insert(
            r1,
            RevisionNode { parent: None, deleted: false, body: Some(body(1).to_json()), seq: Some(1), foreign: None },
        );
        let loaded: HashMap<RecordKey, RevisionTree<String>> = [(("t".to_owned(), "x".to_owned()), tree)].into();
        let mut planner = Planner::new(&head(), loaded, 2);
        planner.local_write(write(Some(r1), false, body(2)), ReconcilePolicy::KeepConflicts).unwrap();
        let y = LocalWrite { id: "y".into(), ..write(None, false, body(3)) };
        planner.local_write(y, ReconcilePolicy::KeepConflicts).unwrap();
        let ws = planner.finish().unwrap();
        let flags: Vec<(&str, bool)> =
            ws.states.iter().map(|s| s.id.as_str()).zip(ws.new_states.iter().copied()).collect();
        assert_eq!(flags, [("x", false), ("y", true)]);
    }

    /// A revision of `t/<id>` with body `n`, on `parent` (whose own ancestry follows in `ancestry`).
    fn revision(id: &str, ancestry: &[RevId], deleted: bool, n: i64) -> RevisionData {
        let b = body(n);
        let rev = revision_id("t", id, ancestry.first(), deleted, &b);
        RevisionData {
            table: "t".into(),
            id: id.into(),
            rev,
            deleted,
            attributes: Some(Body::new(&b)),
            ancestry: ancestry.to_vec(),
            foreign: None,
        }
    }

    /// A batch with what cutting must keep whole: records with several revisions some way apart (a
    /// line, a branch, a tombstone), stubs from a cut-short ancestry, and records of one revision.
    fn spread_batch() -> Vec<RevisionData> {
        let mut batch = Vec::new();
        let mut firsts: Vec<RevId> = Vec::new();
        for round in 0..8usize {
            // The second revision of each line begun in the round before (one a tombstone, one a
            // branch beside a second child), then new lines, then records of one revision.
            for (k, first) in std::mem::take(&mut firsts).into_iter().enumerate() {
                let id = format!("line{}-{k}", round - 1);
                batch.push(revision(&id, &[first], round == 3 && k == 0, 2));
                if round == 4 && k == 1 {
                    batch.push(revision(&id, &[first], false, 3));
                }
            }
            for k in 0..3 {
                let r = revision(&format!("line{round}-{k}"), &[], false, 1);
                firsts.push(r.rev);
                batch.push(r);
            }
            for j in 0..2 {
                batch.push(revision(&format!("one{round}-{j}"), &[], false, 1));
            }
            if round == 5 {
                batch.push(revision("deep", &[RevId::new(2, [7; 16]), RevId::new(1, [8; 16])], false, 1));
            }
        }
        batch
    }

    #[test]
    fn parts_keep_every_record_whole_and_cut_near_their_size() {
        let keys = |ids: &[&'static str]| {
            ids.iter().map(|id| (!id.is_empty()).then_some(("t", *id, false))).collect::<Vec<_>>()
        };
        assert_eq!(part_lengths(keys(&["a", "b", "c", "d", "e"]), 2), vec![2, 2, 1]);
        assert_eq!(part_lengths(keys(&["a", "b", "a", "c", "d"]), 2), vec![3, 2], "a's revisions in one part");
        assert_eq!(part_lengths(keys(&["a", "b", "c", "b", "d", "a"]), 2), vec![6], "b inside a's span");
        assert_eq!(part_lengths(keys(&["a", "", "", "b", ""]), 2), vec![2, 2, 1], "writes of no record anywhere");
        assert_eq!(part_lengths(keys(&["a", "b"]), 2), vec![2]);
        assert_eq!(part_lengths(keys(&[]), 2), vec![0]);
        let mut foreign = keys(&["a", "b", "c", "d", "e"]);
        foreign[4] = Some(("t", "e", true));
        assert_eq!(part_lengths(foreign, 2), vec![5], "a batch with a foreign revision is not cut");
        let batch = spread_batch();
        let lengths = part_lengths(batch.iter().map(|r| Some((r.table.as_str(), r.id.as_str(), false))), 7);
        assert_eq!(lengths.iter().sum::<usize>(), batch.len());
        assert!(lengths.len() > 1 && lengths[..lengths.len() - 1].iter().all(|n| *n >= 7), "{lengths:?}");
    }

    /// Planned in parts, a batch gives the write set it gives planned whole, in pieces: the same
    /// revisions, states and bodies in the same order, the same counts, ending at the same head.
    #[test]
    fn a_plan_cut_into_parts_stores_what_the_whole_plan_stores() {
        let batch = spread_batch();
        let whole = {
            let mut planner = Planner::new(&head(), HashMap::new(), batch.len());
            for r in batch.clone() {
                planner.replicated(verified(r)).unwrap();
            }
            planner.finish().unwrap()
        };
        let lengths = part_lengths(batch.iter().map(|r| Some((r.table.as_str(), r.id.as_str(), false))), 5);
        assert!(lengths.len() > 3, "{lengths:?}");
        let mut planner = Planner::new(&head(), HashMap::new(), batch.len());
        let mut parts = Vec::new();
        let mut revisions = batch.into_iter();
        for length in &lengths {
            for r in revisions.by_ref().take(*length) {
                planner.replicated(verified(r)).unwrap();
            }
            parts.push(planner.cut().unwrap().expect("no foreign revision"));
        }
        parts.push(planner.finish().unwrap());
        let last = parts.last().unwrap();
        assert!(last.revisions.is_empty() && last.states.is_empty(), "everything was cut off before");
        assert_eq!(last.head, whole.head, "the commit after the parts carries the head");
        let mut joined = WriteSet { head: last.head, ..WriteSet::default() };
        for part in &parts {
            joined.revisions.extend(part.revisions.iter().cloned());
            joined.states.extend(part.states.iter().cloned());
            joined.new_states.extend(part.new_states.iter().copied());
            joined.views.extend(part.views.iter().cloned());
            joined.fill_bodies.extend(part.fill_bodies.iter().cloned());
            joined.fills_stubs |= part.fills_stubs;
            joined.live_records += part.live_records;
        }
        assert!(joined == whole, "the parts, joined, are the whole plan");
        // Each part extends the one before it.
        let mut at = head();
        for part in &parts[..parts.len() - 1] {
            assert!(extends(part, (at.update_seq, at.chain)));
            (at.update_seq, at.chain) = part.head.unwrap_or((at.update_seq, at.chain));
        }
    }

    #[test]
    fn a_record_a_part_closed_is_planned_again_only_as_an_error() {
        let mut planner = Planner::new(&head(), HashMap::new(), 2);
        let first = revision("x", &[], false, 1);
        let second = revision("x", &[first.rev], false, 2);
        planner.replicated(verified(first)).unwrap();
        planner.cut().unwrap().expect("a part");
        let e = planner.replicated(verified(second)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal, "{e}");
        let e = planner.local_write(write(None, false, body(3)), ReconcilePolicy::KeepConflicts).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    }
}
