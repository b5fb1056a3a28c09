//! The local write rules of SPEC §4.1 on one record's tree: which revision a write returns, and the
//! revisions it adds (its own, and tombstones closing the branches it resolves).

use outpost_api::{Attributes, Body, Error, ReconcilePolicy, Result, RevId};

use crate::hash::{revision_id, revision_id_of_encoded};
use crate::storage::RecordKey;
use crate::tree::RevisionTree;

/// A local write, already validated against limits and field declarations.
#[derive(Clone, Debug)]
pub(crate) struct LocalWrite {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The edited revision (`None`: create, revive after delete, or for a delete the winner).
    pub parent: Option<RevId>,
    /// Write a tombstone.
    pub deleted: bool,
    /// The new body (empty for a tombstone), for the table's field checks: the planner takes `encoded`.
    pub attributes: Attributes,
    /// The canonical bytes of `attributes` (what the new revision's id hashes) and its wire JSON,
    /// made once, when validated.
    pub encoded: Body,
    /// Leaves to close with tombstones.
    pub resolves: Vec<RevId>,
}

/// A revision a local write adds, before it gets its seq: the write's own revision (its body is the
/// write's) or a tombstone closing a branch (no body).
pub(super) struct NewRevision {
    pub(super) rev: RevId,
    pub(super) parent: Option<RevId>,
    pub(super) deleted: bool,
    /// Whether the body is the write's attributes (else empty).
    pub(super) own: bool,
    /// The seq of the event this one replaces: the revision was held as foreign (SPEC §3).
    pub(super) replaces: Option<u64>,
}

impl NewRevision {
    /// The write's own revision of record `key` on `parent`.
    fn of((table, id): &RecordKey, w: &LocalWrite, parent: Option<RevId>) -> Self {
        let rev = revision_id_of_encoded(table, id, parent.as_ref(), w.deleted, w.encoded.canonical());
        NewRevision { rev, parent, deleted: w.deleted, own: true, replaces: None }
    }

    /// The same revision, replacing the foreign body `tree` holds under its id, if it does.
    fn over_foreign(self, tree: &RevisionTree<String>) -> Self {
        let replaces = tree.get(&self.rev).filter(|n| n.foreign.is_some()).and_then(|n| n.seq);
        NewRevision { replaces, ..self }
    }

    /// A tombstone closing the branch of `leaf` of record `key`.
    fn closing((table, id): &RecordKey, leaf: RevId) -> Self {
        let rev = revision_id(table, id, Some(&leaf), true, &Attributes::new());
        NewRevision { rev, parent: Some(leaf), deleted: true, own: false, replaces: None }
    }
}

/// A local write whose revision is held pending (replayed from quicksync files without its body,
/// before the revision after it) is not taken as already written — it is not part of the record —
/// nor written again under the same id: Conflict, until the replay brings the revision after it.
fn refuse_pending(tree: &RevisionTree<String>, (table, id): &RecordKey, rev: RevId) -> Result<()> {
    if tree.get(&rev).is_some_and(|n| n.body.is_none() && !n.deleted) && tree.is_pending(&rev) {
        return Err(Error::conflict(
            format!(
                "revision {rev} of {table}/{id} is held without its body (replayed from quicksync files before \
                 the revision after it): write again once the pull has finished"
            ),
            tree.winner(),
        ));
    }
    Ok(())
}

/// The local write rules of SPEC §4.1 on one tree: the revision returned to the client, and the new
/// revisions to store (none for a retry or a no-op).
pub(super) fn plan_local(
    tree: &RevisionTree<String>,
    key: &RecordKey,
    w: &LocalWrite,
    policy: ReconcilePolicy,
) -> Result<(RevId, Vec<NewRevision>)> {
    let winner = tree.winner();
    let winner_deleted = winner.is_some_and(|r| tree.get(&r).is_some_and(|n| n.deleted));
    let (table, id) = (key.0.as_str(), key.1.as_str());
    let parent = match (w.parent, winner) {
        (Some(p), _) => Some(p),
        (None, None) if w.deleted => return Err(Error::not_found(format!("record {table}/{id} does not exist"))),
        (None, None) => None,
        // A delete without a rev deletes the current winner; a create on a deleted record extends the
        // tombstone's branch; resolving without a rev writes on the winner's branch.
        (None, Some(win)) if w.deleted || winner_deleted || !w.resolves.is_empty() => Some(win),
        (None, Some(win)) => {
            // A retried create is its own first revision.
            let first = NewRevision::of(key, w, None).over_foreign(tree);
            refuse_pending(tree, key, first.rev)?;
            // A retry returns the revision; one held as foreign gets this native body (SPEC §3).
            if first.replaces.is_some() {
                return Ok((first.rev, vec![first]));
            }
            if tree.contains(&first.rev) {
                return Ok((first.rev, vec![]));
            }
            return Err(Error::conflict(format!("record {table}/{id} exists: name the revision you edit"), Some(win)));
        }
    };
    let main = NewRevision::of(key, w, parent).over_foreign(tree);
    refuse_pending(tree, key, main.rev)?;
    // A write whose revision is held as foreign (a CouchDB peer's copy of it, or one planted under
    // its predicted id) stores its native body over it (SPEC §3).
    if main.replaces.is_some() && w.resolves.is_empty() {
        return Ok((main.rev, vec![main]));
    }
    if tree.contains(&main.rev) && w.resolves.is_empty() {
        return Ok((main.rev, vec![]));
    }
    let mut new = Vec::new();
    let mut result = main.rev;
    if let Some(p) = parent {
        let Some(node) = tree.get(&p).filter(|_| tree.is_leaf(&p)) else {
            return Err(Error::conflict(format!("revision {p} is not a current leaf of {table}/{id}"), winner));
        };
        // Stored JSON is the canonical wire JSON (every write stores a `Body`'s): equal text is an
        // equal body. (Text some older release wrote otherwise would, at worst, give a write of the
        // same body a new revision: never a body lost.)
        let unchanged = node.deleted == w.deleted && node.body.as_deref() == Some(w.encoded.json());
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
        // A leaf named twice is closed once.
        if !close.contains(r) {
            close.push(*r);
        }
    }
    if policy == ReconcilePolicy::MergeFields && parent.is_some() && parent == winner {
        for r in tree.conflicts() {
            if !close.contains(&r) {
                close.push(r);
            }
        }
    }
    for leaf in close {
        new.push(NewRevision::closing(key, leaf));
    }
    Ok((result, new))
}
