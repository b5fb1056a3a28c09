//! Revision trees (SPEC §4): every revision a database holds of one record, with parent links, the
//! leaves, the winner and the conflicts.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use outpost_api::{Attributes, Error, RevId};

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
}

impl<B> RevisionNode<B> {
    /// Whether only the id of this revision is known.
    pub fn is_stub(&self) -> bool {
        self.seq.is_none()
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
                (rev, RevisionNode { parent: n.parent, deleted: n.deleted, body: n.body.map(&mut f), seq: n.seq })
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

    /// The revisions that are no other revision's parent, in revision id order.
    pub fn leaves(&self) -> Vec<RevId> {
        let parents: HashSet<&RevId> = self.nodes.values().filter_map(|n| n.parent.as_ref()).collect();
        self.nodes.keys().filter(|r| !parents.contains(r)).copied().collect()
    }

    /// Whether `rev` is a current leaf.
    pub fn is_leaf(&self, rev: &RevId) -> bool {
        self.nodes.contains_key(rev) && !self.nodes.values().any(|n| n.parent.as_ref() == Some(rev))
    }

    /// The winner (SPEC §4.3): non-deleted leaves beat deleted ones, then the higher generation, then
    /// the greater revision id. `None` for an empty tree.
    pub fn winner(&self) -> Option<RevId> {
        self.leaves().into_iter().max_by_key(|r| (!self.nodes[r].deleted, *r))
    }

    /// Non-deleted leaves other than the winner, in revision id order.
    pub fn conflicts(&self) -> Vec<RevId> {
        let winner = self.winner();
        self.leaves().into_iter().filter(|r| Some(*r) != winner && !self.nodes[r].deleted).collect()
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
