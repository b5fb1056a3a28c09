//! Compaction's decision (SPEC §4.5), pure: which revisions of a record may lose their bodies. The
//! revisions themselves stay — ids, parents, seqs — so replication still recognises them and
//! revs-diff answers as before; only bodies nobody reads any more go.
//!
//! A body may go when its revision is not a leaf, lies more than `keep` generations below every
//! leaf, and is not the base a `merge-fields` merge of the record's open conflict needs (the lowest
//! common ancestor of its non-deleted leaves, which `reconcile` merges against). So every read of a
//! leaf and every reconciled state is the same before and after (a property test compacts random
//! trees and compares).

use outpost_api::RevId;

use crate::tree::RevisionTree;

/// The revisions of `tree` whose bodies compaction may drop, keeping `keep` generations below every
/// leaf (SPEC §4.5), in revision id order. Revisions without a body (stubs, bodies already dropped)
/// are not named.
pub fn droppable<B>(tree: &RevisionTree<B>, keep: u64) -> Vec<RevId> {
    let leaves: std::collections::HashSet<RevId> = tree.leaves().into_iter().collect();
    let Some(lowest_leaf) = leaves.iter().map(|l| l.generation).min() else { return Vec::new() };
    let base = merge_base(tree);
    tree.iter()
        .filter(|(rev, node)| {
            node.body.is_some()
                && !leaves.contains(rev)
                && Some(**rev) != base
                && lowest_leaf.saturating_sub(rev.generation) > keep
        })
        .map(|(rev, _)| *rev)
        .collect()
}

/// The revision a `merge-fields` read merges the record's open conflict against: the lowest common
/// ancestor of the live winner and the other non-deleted leaves, when there is a conflict.
fn merge_base<B>(tree: &RevisionTree<B>) -> Option<RevId> {
    let winner = tree.winner()?;
    let conflicts = tree.conflicts();
    if conflicts.is_empty() || tree.get(&winner).is_none_or(|n| n.deleted) {
        return None;
    }
    let mut branches = vec![winner];
    branches.extend(conflicts);
    tree.common_ancestor(&branches)
}

#[cfg(test)]
mod tests {
    use outpost_api::{Attributes, ReconcilePolicy, Value};
    use proptest::prelude::*;

    use super::*;
    use crate::reconcile::reconcile;
    use crate::tree::RevisionNode;

    fn body(n: i64, m: i64) -> Attributes {
        Attributes::new().with("n", Value::Int(n)).with("m", Value::Int(m))
    }

    /// A tree grown node by node: each a child of an earlier node (or a new root when `parent` is
    /// `None` for the first), some deleted, bodies from small values so branches agree and differ.
    fn grow(steps: &[(usize, bool, i64, i64)]) -> RevisionTree {
        let mut tree = RevisionTree::new();
        let mut revs: Vec<RevId> = Vec::new();
        for (i, (parent, deleted, n, m)) in steps.iter().enumerate() {
            let parent = if revs.is_empty() { None } else { Some(revs[parent % revs.len()]) };
            let generation = parent.map_or(1, |p| p.generation + 1);
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            id[8] = (*n as u8).wrapping_mul(31);
            let rev = RevId::new(generation, id);
            let node = RevisionNode {
                parent,
                deleted: *deleted,
                body: Some(body(*n, *m)),
                seq: Some(i as u64 + 1),
                foreign: None,
            };
            tree.insert(rev, node);
            revs.push(rev);
        }
        tree
    }

    fn compacted(tree: &RevisionTree, keep: u64) -> RevisionTree {
        let mut out = tree.clone();
        for rev in droppable(tree, keep) {
            out.get_mut(&rev).expect("a revision of the tree").body = None;
        }
        out
    }

    #[test]
    fn a_line_keeps_its_leaf_and_the_generations_asked_for() {
        let steps: Vec<(usize, bool, i64, i64)> =
            (0..6usize).map(|i| (i.saturating_sub(1), false, i as i64, 0)).collect();
        let tree = grow(&steps);
        let gens = |revs: Vec<RevId>| revs.iter().map(|r| r.generation).collect::<Vec<_>>();
        assert_eq!(gens(droppable(&tree, 0)), [1, 2, 3, 4, 5], "every body but the leaf's");
        assert_eq!(gens(droppable(&tree, 2)), [1, 2, 3], "generations 4 and 5 are within 2 of the leaf (6)");
        assert!(droppable(&tree, 5).is_empty());
        assert!(droppable(&compacted(&tree, 0), 0).is_empty(), "dropped bodies are not named again");
    }

    #[test]
    fn the_base_of_an_open_conflict_keeps_its_body() {
        // 1 - 2 - 3 - 4a and 3 - 4b: an open conflict based on 3.
        let tree = grow(&[(0, false, 1, 1), (0, false, 2, 1), (1, false, 3, 1), (2, false, 4, 1), (2, false, 3, 5)]);
        let base = tree.common_ancestor(&tree.leaves()).expect("a base");
        assert_eq!(base.generation, 3);
        let dropped = droppable(&tree, 0);
        assert!(!dropped.contains(&base), "{dropped:?}");
        assert_eq!(dropped.len(), 2, "generations 1 and 2");
    }

    fn steps() -> impl Strategy<Value = Vec<(usize, bool, i64, i64)>> {
        prop::collection::vec((0usize..64, prop::bool::weighted(0.15), 0i64..4, 0i64..4), 1..40)
    }

    proptest! {
        /// Every read a compacted tree answers is the uncompacted one's: the reconciled state under
        /// both policies (winner, leaves, conflicts, body, merged fields), every leaf's body, and
        /// every revision's id and parent; only non-leaf bodies deep enough go.
        #[test]
        fn compaction_changes_no_read(steps in steps(), keep in 0u64..4) {
            let tree = grow(&steps);
            let after = compacted(&tree, keep);
            for policy in [ReconcilePolicy::KeepConflicts, ReconcilePolicy::MergeFields] {
                prop_assert_eq!(reconcile(&after, policy).ok(), reconcile(&tree, policy).ok());
            }
            let lowest_leaf = tree.leaves().iter().map(|l| l.generation).min().unwrap_or(0);
            for (rev, node) in tree.iter() {
                let now = after.get(rev).expect("every revision stays");
                prop_assert_eq!(now.parent, node.parent);
                prop_assert_eq!(now.seq, node.seq);
                if now.body.is_none() {
                    prop_assert!(!tree.is_leaf(rev));
                    prop_assert!(lowest_leaf - rev.generation > keep);
                } else {
                    prop_assert_eq!(&now.body, &node.body);
                }
            }
        }
    }
}
