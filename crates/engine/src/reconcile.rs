//! The reconciled state of a record (SPEC §4.4): a pure function of its revision tree and the table's
//! policy, never of arrival order.

use std::borrow::Cow;
use std::collections::BTreeSet;

use outpost_api::{Attributes, Error, ReconcilePolicy, RevId};

use crate::tree::RevisionTree;

/// What reads return for a record, computed from its revision tree (the body borrowed from it when
/// it is the winner's own).
#[derive(Clone, Debug, PartialEq)]
pub struct Reconciled<'t> {
    /// The winning revision.
    pub winner: RevId,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
    /// The reconciled body (empty for a deleted record).
    pub body: Cow<'t, Attributes>,
    /// Every leaf, in revision id order.
    pub leaves: Vec<RevId>,
    /// Non-deleted leaves other than the winner.
    pub conflicts: Vec<RevId>,
    /// Fields a `merge-fields` merge could not settle (took the winner's value).
    pub field_conflicts: Vec<String>,
}

/// What every policy's state shares, of a non-empty tree with any bodies: the winner, every leaf,
/// and the non-deleted leaves other than the winner.
pub fn outcome<B>(tree: &RevisionTree<B>) -> Result<(RevId, Vec<RevId>, Vec<RevId>), Error> {
    let leaves = tree.leaves();
    let winner = tree.winner_of(&leaves).ok_or_else(|| Error::internal("reconcile of an empty revision tree"))?;
    let conflicts = tree.conflicts_of(&leaves, Some(winner));
    Ok((winner, leaves, conflicts))
}

/// Compute the reconciled state of a non-empty tree.
pub fn reconcile(tree: &RevisionTree, policy: ReconcilePolicy) -> Result<Reconciled<'_>, Error> {
    let (winner, leaves, conflicts) = outcome(tree)?;
    let node = tree.get(&winner).expect("winner is in the tree");
    if node.deleted {
        return Ok(Reconciled {
            winner,
            deleted: true,
            body: Cow::Owned(Attributes::new()),
            leaves,
            conflicts,
            field_conflicts: vec![],
        });
    }
    let winner_body =
        node.body.as_ref().ok_or_else(|| Error::corrupt(format!("winning revision {winner} has no body")))?;
    let (body, field_conflicts) = match policy {
        ReconcilePolicy::MergeFields if !conflicts.is_empty() => {
            let (merged, field_conflicts) = merge_fields(tree, winner, winner_body, &conflicts);
            (Cow::Owned(merged), field_conflicts)
        }
        _ => (Cow::Borrowed(winner_body), vec![]),
    };
    Ok(Reconciled { winner, deleted: false, body, leaves, conflicts, field_conflicts })
}

/// Three-way merge of the winner and the conflicting leaves against their lowest common ancestor:
/// a field changed on one branch only takes that change; a field changed differently on several takes
/// the winner's value and is reported. Without an ancestor body (none shared, or compacted), nothing
/// can tell a change from a value kept: the winner's body, with every field on which a branch differs
/// from it reported, so that no branch's edit is dropped unseen.
fn merge_fields(
    tree: &RevisionTree,
    winner: RevId,
    winner_body: &Attributes,
    conflicts: &[RevId],
) -> (Attributes, Vec<String>) {
    let mut branches = vec![winner];
    branches.extend_from_slice(conflicts);
    let base = tree.common_ancestor(&branches).and_then(|a| tree.get(&a)).and_then(|n| n.body.clone());
    let bodies: Option<Vec<&Attributes>> =
        conflicts.iter().map(|r| tree.get(r).and_then(|n| n.body.as_ref())).collect();
    let Some(others) = bodies else { return (winner_body.clone(), vec![]) };
    let Some(base) = base else {
        let mut names: BTreeSet<&String> = winner_body.keys().collect();
        names.extend(others.iter().flat_map(|b| b.keys()));
        let differing = names.into_iter().filter(|n| others.iter().any(|b| b.get(*n) != winner_body.get(*n)));
        return (winner_body.clone(), differing.cloned().collect());
    };
    let mut names: BTreeSet<&String> = base.keys().collect();
    names.extend(winner_body.keys());
    for b in &others {
        names.extend(b.keys());
    }
    let mut merged = Attributes::new();
    let mut field_conflicts = Vec::new();
    for name in names {
        let base_value = base.get(name);
        let winner_value = winner_body.get(name);
        // Distinct changes across branches, winner first.
        let mut changes = Vec::new();
        for value in std::iter::once(winner_value).chain(others.iter().map(|b| b.get(name))) {
            if value != base_value && !changes.contains(&value) {
                changes.push(value);
            }
        }
        let chosen = match changes.len() {
            0 => base_value,
            1 => changes[0],
            _ => {
                field_conflicts.push(name.clone());
                winner_value
            }
        };
        if let Some(v) = chosen {
            merged.insert(name.clone(), v.clone());
        }
    }
    (merged, field_conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::revision_id;
    use crate::tree::RevisionNode;
    use outpost_api::Value;

    /// A tree: base, then one branch per body given, each from base.
    fn branches(base: &Attributes, leaves: &[Attributes]) -> (RevisionTree, Vec<RevId>) {
        let mut tree = RevisionTree::new();
        let root = revision_id("t", "x", None, false, base);
        tree.insert(
            root,
            RevisionNode { parent: None, deleted: false, body: Some(base.clone()), seq: Some(1), foreign: None },
        );
        let mut revs = vec![];
        for (i, b) in leaves.iter().enumerate() {
            let r = revision_id("t", "x", Some(&root), false, b);
            tree.insert(
                r,
                RevisionNode {
                    parent: Some(root),
                    deleted: false,
                    body: Some(b.clone()),
                    seq: Some(2 + i as u64),
                    foreign: None,
                },
            );
            revs.push(r);
        }
        (tree, revs)
    }

    fn attrs(pairs: &[(&str, i64)]) -> Attributes {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::Int(*v))).collect()
    }

    #[test]
    fn merge_fields_cases() {
        // (base, branches, expected merge, expected field conflicts)
        type Case = (Attributes, Vec<Attributes>, Option<Attributes>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            // Disjoint edits: both kept.
            (
                attrs(&[("a", 1), ("b", 1)]),
                vec![attrs(&[("a", 2), ("b", 1)]), attrs(&[("a", 1), ("b", 3)])],
                Some(attrs(&[("a", 2), ("b", 3)])),
                vec![],
            ),
            // A removal on one branch merges.
            (
                attrs(&[("a", 1), ("b", 1)]),
                vec![attrs(&[("a", 1)]), attrs(&[("a", 5), ("b", 1)])],
                Some(attrs(&[("a", 5)])),
                vec![],
            ),
            // Same change on both: no conflict.
            (
                attrs(&[("a", 1)]),
                vec![attrs(&[("a", 2)]), attrs(&[("a", 2), ("c", 1)])],
                Some(attrs(&[("a", 2), ("c", 1)])),
                vec![],
            ),
            // Overlapping edits: the winner's value, reported. (None: the winner's value, decided below.)
            (attrs(&[("a", 1)]), vec![attrs(&[("a", 2)]), attrs(&[("a", 3)])], None, vec!["a"]),
        ];
        for (base, leaves, expect, conflicts) in cases {
            let (tree, _) = branches(&base, &leaves);
            let r = reconcile(&tree, ReconcilePolicy::MergeFields).unwrap();
            let winner_body = tree.get(&r.winner).unwrap().body.clone().unwrap();
            assert_eq!(*r.body, expect.unwrap_or(winner_body), "base {base:?} leaves {leaves:?}");
            assert_eq!(r.field_conflicts, conflicts);
            assert_eq!(r.conflicts.len(), 1);
            // keep-conflicts keeps the winner's body.
            let k = reconcile(&tree, ReconcilePolicy::KeepConflicts).unwrap();
            assert_eq!(*k.body, tree.get(&k.winner).unwrap().body.clone().unwrap());
        }
    }

    #[test]
    fn winner_rule() {
        let (mut tree, revs) = branches(&attrs(&[("a", 1)]), &[attrs(&[("a", 2)]), attrs(&[("a", 3)])]);
        let max = *revs.iter().max().unwrap();
        assert_eq!(tree.winner(), Some(max));
        // A tombstone on the greater branch hands the win to the other, whatever its id.
        let tomb = revision_id("t", "x", Some(&max), true, &Attributes::new());
        tree.insert(
            tomb,
            RevisionNode {
                parent: Some(max),
                deleted: true,
                body: Some(Attributes::new()),
                seq: Some(9),
                foreign: None,
            },
        );
        let other = *revs.iter().min().unwrap();
        assert_eq!(tree.winner(), Some(other));
        assert!(tree.conflicts().is_empty());
        assert_eq!(tree.leaves().len(), 2);
    }

    #[test]
    fn without_a_base_body_every_differing_field_is_reported() {
        let (mut tree, revs) = branches(
            &attrs(&[("a", 1), ("b", 1)]),
            &[attrs(&[("a", 2), ("b", 1)]), attrs(&[("a", 1), ("b", 1), ("c", 3)])],
        );
        // The base's body compacted away: a change cannot be told from a value kept.
        let base = tree.common_ancestor(&revs).unwrap();
        tree.get_mut(&base).unwrap().body = None;
        let r = reconcile(&tree, ReconcilePolicy::MergeFields).unwrap();
        let winner_body = tree.get(&r.winner).unwrap().body.clone().unwrap();
        assert_eq!(*r.body, winner_body, "the winner's body");
        assert_eq!(r.field_conflicts, ["a", "c"], "a and c differ between the branches; b does not");
    }
}
