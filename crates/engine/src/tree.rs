//! Revision trees (SPEC §4): every revision a database holds of one record, with parent links, the
//! leaves, the winner and the conflicts.

use std::collections::{BTreeMap, BTreeSet};

use outpost_api::{Attributes, Digest, Error, RevId};

/// One revision of a record as stored, its body parsed (`B` = [`Attributes`]) or, for sending it on
/// as it is, its stored wire JSON (`B` = `String`).
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionNode<B = Attributes> {
    /// The parent, `None` for a first revision or where the ancestry was truncated.
    pub parent: Option<RevId>,
    /// Whether this revision is a tombstone (false for a stub, whose flag is unknown).
    pub deleted: bool,
    /// The body; `None` for a stub (an ancestor known only by id) or a compacted body.
    pub body: Option<B>,
    /// The local seq of the revision event that stored it; `None` for a stub.
    pub seq: Option<u64>,
    /// A foreign revision's body digest (SPEC §3); `None` for a native revision or a stub.
    pub foreign: Option<Digest>,
}

impl<B> RevisionNode<B> {
    /// A stub: a revision known only by its id, under `parent` when known.
    pub fn stub(parent: Option<RevId>) -> Self {
        RevisionNode { parent, deleted: false, body: None, seq: None, foreign: None }
    }

    /// Whether only the id of this revision is known.
    pub fn is_stub(&self) -> bool {
        self.seq.is_none()
    }

    /// Whether this revision makes itself and its ancestors part of the record: it has a body or is a
    /// tombstone (see [`RevisionTree::leaves`]).
    fn settles(&self) -> bool {
        self.body.is_some() || self.deleted
    }
}

/// Every revision of one record that this database holds (bodies as in [`RevisionNode`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionTree<B = Attributes> {
    nodes: BTreeMap<RevId, RevisionNode<B>>,
}

impl<B> Default for RevisionTree<B> {
    fn default() -> Self {
        RevisionTree { nodes: BTreeMap::new() }
    }
}

impl RevisionTree {
    /// An empty tree (a record this database has never seen).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<B> RevisionTree<B> {
    /// The same tree with each body turned into another form by `f`.
    pub fn map_bodies<C>(self, mut f: impl FnMut(B) -> C) -> RevisionTree<C> {
        let nodes = self
            .nodes
            .into_iter()
            .map(|(rev, n)| {
                (
                    rev,
                    RevisionNode {
                        parent: n.parent,
                        deleted: n.deleted,
                        body: n.body.map(&mut f),
                        seq: n.seq,
                        foreign: n.foreign,
                    },
                )
            })
            .collect();
        RevisionTree { nodes }
    }

    /// Whether the tree holds no revision.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Add or replace a node.
    pub fn insert(&mut self, rev: RevId, node: RevisionNode<B>) {
        // Invariant: a revision is one generation above its parent (revision ids are verified before stored).
        debug_assert!(node.parent.is_none_or(|p| p.generation + 1 == rev.generation), "{rev} under {:?}", node.parent);
        self.nodes.insert(rev, node);
    }

    /// A node by revision id.
    pub fn get(&self, rev: &RevId) -> Option<&RevisionNode<B>> {
        self.nodes.get(rev)
    }

    /// A node by revision id, to change (e.g. to link a parent learned late).
    pub fn get_mut(&mut self, rev: &RevId) -> Option<&mut RevisionNode<B>> {
        self.nodes.get_mut(rev)
    }

    /// Whether the tree holds `rev` (as a full revision or a stub).
    pub fn contains(&self, rev: &RevId) -> bool {
        self.nodes.contains_key(rev)
    }

    /// Every revision, in revision id order.
    pub fn iter(&self) -> impl Iterator<Item = (&RevId, &RevisionNode<B>)> {
        self.nodes.iter()
    }

    /// The revisions that are no other revision's parent, in revision id order — not counting
    /// *pending* ones: revisions without a body that are no tombstone and have no descendant with a
    /// body or a tombstone. Those are compacted revisions replayed from a quicksync file before the
    /// revision that followed them (`ReplicaTarget::put_events`), and the stubs above them: not part of
    /// what the record reads as until a later revision settles them. A tree holds none otherwise.
    pub fn leaves(&self) -> Vec<RevId> {
        // Most records hold one revision (every new one does): its own leaf unless pending.
        if self.nodes.len() == 1 {
            return self.nodes.iter().filter(|(_, n)| n.settles()).map(|(r, _)| *r).collect();
        }
        let parents = sorted(self.nodes.values().filter_map(|n| n.parent));
        let leaves: Vec<RevId> = self.nodes.keys().filter(|r| parents.binary_search(r).is_err()).copied().collect();
        if leaves.iter().all(|r| self.nodes[r].settles()) {
            return leaves;
        }
        let settled = self.settled();
        let parents = sorted(settled.iter().filter_map(|r| self.nodes[r].parent));
        settled.iter().filter(|r| parents.binary_search(r).is_err()).copied().collect()
    }

    /// The revisions that have a body or are tombstones, with every ancestor of one: everything but
    /// the pending revisions of [`RevisionTree::leaves`], in revision id order.
    fn settled(&self) -> BTreeSet<RevId> {
        let mut settled = BTreeSet::new();
        for (rev, node) in &self.nodes {
            if !node.settles() {
                continue;
            }
            let mut cursor = Some(*rev);
            while let Some(r) = cursor.filter(|r| settled.insert(*r)) {
                cursor = self.nodes.get(&r).and_then(|n| n.parent);
            }
        }
        settled
    }

    /// Whether `rev` is a pending revision of [`RevisionTree::leaves`]: held by an event, without a
    /// body, and no tombstone, with no descendant that has a body or is a tombstone.
    pub fn is_pending(&self, rev: &RevId) -> bool {
        self.nodes.get(rev).is_some_and(|n| !n.is_stub() && !n.settles()) && !self.settled().contains(rev)
    }

    /// Whether `rev` is a current leaf (as [`RevisionTree::leaves`] counts them).
    pub fn is_leaf(&self, rev: &RevId) -> bool {
        self.nodes.contains_key(rev) && self.leaves().contains(rev)
    }

    /// The winner (SPEC §4.3): non-deleted leaves beat deleted ones, then the higher generation, then
    /// the greater revision id. `None` for an empty tree.
    pub fn winner(&self) -> Option<RevId> {
        self.winner_of(&self.leaves())
    }

    /// The winner among `leaves` (this tree's [`RevisionTree::leaves`]).
    pub fn winner_of(&self, leaves: &[RevId]) -> Option<RevId> {
        leaves.iter().copied().max_by_key(|r| (!self.nodes[r].deleted, *r))
    }

    /// Non-deleted leaves other than the winner, in revision id order.
    pub fn conflicts(&self) -> Vec<RevId> {
        let leaves = self.leaves();
        self.conflicts_of(&leaves, self.winner_of(&leaves))
    }

    /// The conflicts among `leaves` (this tree's [`RevisionTree::leaves`]) beside `winner`.
    pub fn conflicts_of(&self, leaves: &[RevId], winner: Option<RevId>) -> Vec<RevId> {
        leaves.iter().copied().filter(|r| Some(*r) != winner && !self.nodes[r].deleted).collect()
    }

    /// The ancestry of `rev`: parent first, to the root (or as far as the tree knows).
    pub fn ancestry(&self, rev: &RevId) -> Vec<RevId> {
        let mut out = Vec::new();
        let mut cursor = self.nodes.get(rev).and_then(|n| n.parent);
        while let Some(p) = cursor {
            out.push(p);
            cursor = self.nodes.get(&p).and_then(|n| n.parent);
        }
        out
    }

    /// The lowest common ancestor of `revs` (each counted as its own ancestor): the highest-generation
    /// revision on every one's ancestry. `None` when they share none.
    pub fn common_ancestor(&self, revs: &[RevId]) -> Option<RevId> {
        let mut common: Option<BTreeSet<RevId>> = None;
        for rev in revs {
            let mut line: BTreeSet<RevId> = self.ancestry(rev).into_iter().collect();
            line.insert(*rev);
            common = Some(match common {
                None => line,
                Some(c) => c.intersection(&line).copied().collect(),
            });
        }
        common?.into_iter().max()
    }

    /// Check the tree's shape: every parent's generation is one less than its child's.
    pub fn check(&self) -> Result<(), Error> {
        for (rev, node) in &self.nodes {
            if let Some(p) = node.parent {
                if p.generation.checked_add(1) != Some(rev.generation) {
                    return Err(Error::corrupt(format!("revision {rev} has parent {p} of the wrong generation")));
                }
            }
        }
        Ok(())
    }
}

/// Revision ids sorted, for `binary_search` (cheaper than hashing them for a tree's few nodes).
fn sorted(revs: impl Iterator<Item = RevId>) -> Vec<RevId> {
    let mut out: Vec<RevId> = revs.collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(generation: u64, n: u8) -> RevId {
        RevId::new(generation, [n; 16])
    }

    fn node(parent: Option<RevId>, body: Option<u8>, seq: Option<u64>) -> RevisionNode<u8> {
        RevisionNode { parent, deleted: false, body, seq, foreign: None }
    }

    #[test]
    fn pending_revisions_are_no_leaves_until_a_settled_one_follows() {
        // 1 (body) - 2 (compacted, pending) and, on another line, stub 3 - 4 (compacted, pending).
        let mut tree: RevisionTree<u8> = RevisionTree::default();
        tree.insert(rev(1, 1), node(None, Some(1), Some(1)));
        tree.insert(rev(2, 2), node(Some(rev(1, 1)), None, Some(2)));
        tree.insert(rev(3, 3), node(None, None, None));
        tree.insert(rev(4, 4), node(Some(rev(3, 3)), None, Some(3)));
        assert_eq!(tree.leaves(), [rev(1, 1)], "pending revisions and the stub above one are not leaves");
        assert_eq!(tree.winner(), Some(rev(1, 1)));
        assert!(tree.is_leaf(&rev(1, 1)) && !tree.is_leaf(&rev(2, 2)) && !tree.is_leaf(&rev(4, 4)));
        assert!(tree.is_pending(&rev(2, 2)) && tree.is_pending(&rev(4, 4)));
        assert!(!tree.is_pending(&rev(1, 1)) && !tree.is_pending(&rev(3, 3)), "a body, and a stub");
        // A tombstone settles its line too.
        let mut tomb = node(Some(rev(4, 4)), None, Some(4));
        tomb.deleted = true;
        tree.insert(rev(5, 5), tomb);
        assert_eq!(tree.leaves(), [rev(1, 1), rev(5, 5)]);
        // The revision after 2 arrives: 2 is part of the line, 3 the leaf.
        tree.insert(rev(3, 6), node(Some(rev(2, 2)), Some(3), Some(5)));
        assert_eq!(tree.leaves(), [rev(3, 6), rev(5, 5)]);
        assert_eq!(tree.winner(), Some(rev(3, 6)));
        assert!(!tree.is_pending(&rev(2, 2)), "compacted now, not pending");
        // Only pending revisions: no leaf at all.
        let mut alone: RevisionTree<u8> = RevisionTree::default();
        alone.insert(rev(1, 1), node(None, None, Some(1)));
        assert!(alone.leaves().is_empty() && alone.winner().is_none());
    }
}
