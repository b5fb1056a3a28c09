//! SPEC §3–§4 across databases: identical edits converge on one rev; every replica computes the same
//! winner, conflicts and reconciled body whatever the arrival order; `merge-fields` merges; explicit
//! resolution closes branches.

use std::sync::Arc;

use outpost_api::{Attributes, Database, PutRecord, ReconcilePolicy, RevId};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{change_of, copy, delete, get, ok, plain, put, replicate, table_with, update_seq, winner_of};
use crate::Factory;

/// The same edit made on two databases from the same parent yields the same rev id: no spurious
/// conflict when they meet.
pub async fn identical_edits_on_two_databases_give_the_same_rev(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    crate::support::table(&*b, "t").await;
    let base = plain(json!({"v": 1}));
    let r1 = put(&*a, "t", "x", None, base.clone()).await;
    assert_eq!(copy(&*a, &*b, "t", "x", &[r1]).await, 1);
    assert_eq!(get(&*b, "t", "x").await.rev, r1);
    let edit = plain(json!({"v": 2, "by": "either"}));
    let on_a = put(&*a, "t", "x", Some(r1), edit.clone()).await;
    let on_b = put(&*b, "t", "x", Some(r1), edit).await;
    assert_eq!(on_a, on_b, "the same edit from the same parent is the same revision");
    let seq = update_seq(&*b).await;
    assert_eq!(copy(&*a, &*b, "t", "x", &[on_a]).await, 0, "a revision the target holds is not written again");
    assert_eq!(update_seq(&*b).await, seq);
    assert_eq!(get(&*b, "t", "x").await.conflicts, Some(vec![]));
    // The same independent create on both sides is one revision too.
    let c_a = put(&*a, "t", "y", None, base.clone()).await;
    let c_b = put(&*b, "t", "y", None, base).await;
    assert_eq!(c_a, c_b);
}

/// One edit of a branch.
#[derive(Clone, Debug)]
enum Step {
    Put(serde_json::Value),
    Delete,
}

/// Two offline edits of one shared record, on database A and database B.
struct Divergence {
    name: &'static str,
    a: Vec<Step>,
    b: Vec<Step>,
}

/// Apply steps on one database from `parent`; returns the tip with its deleted flag.
async fn apply(db: &dyn Database, parent: RevId, steps: &[Step]) -> (RevId, bool) {
    let mut tip = (parent, false);
    for step in steps {
        tip = match step {
            Step::Put(body) => (put(db, "t", "x", Some(tip.0), plain(body.clone())).await, false),
            Step::Delete => (delete(db, "t", "x", Some(tip.0)).await, true),
        };
    }
    tip
}

/// Winner, deleted flag, conflicts (sorted), leaves (sorted) and body as a replica reports them.
async fn reconciled(db: &dyn Database) -> (RevId, bool, Vec<RevId>, Vec<RevId>, Option<Attributes>) {
    let change = change_of(db, "t", "x").await;
    let mut leaves = change.leaves.clone();
    leaves.sort();
    if change.deleted {
        return (change.rev, true, vec![], leaves, None);
    }
    let record = get(db, "t", "x").await;
    assert_eq!(record.rev, change.rev, "get_record and the changes feed agree on the winner");
    let mut conflicts = record.conflicts.expect("conflicts were asked for");
    conflicts.sort();
    (record.rev, false, conflicts, leaves, Some(record.attributes))
}

/// Branches made on two databases, exchanged in different orders among four replicas: all report the
/// winner the spec's rule picks, the same conflicts, leaves and body.
pub async fn winner_and_conflicts_do_not_depend_on_arrival_order(f: &dyn Factory) {
    let put_of = |v: &str| Step::Put(json!({ "v": v }));
    let cases = [
        Divergence { name: "same generation", a: vec![put_of("a1")], b: vec![put_of("b1")] },
        Divergence { name: "longer branch", a: vec![put_of("a1")], b: vec![put_of("b1"), put_of("b2")] },
        Divergence { name: "live beats deleted", a: vec![put_of("a1")], b: vec![put_of("b1"), Step::Delete] },
        Divergence { name: "both deleted", a: vec![Step::Delete], b: vec![put_of("b1"), Step::Delete] },
        Divergence { name: "one side unchanged", a: vec![], b: vec![put_of("b1")] },
    ];
    for case in cases {
        let name = case.name;
        let (a, b, c, d) = (f.fresh().await, f.fresh().await, f.fresh().await, f.fresh().await);
        crate::support::table(&*a, "t").await;
        let r1 = put(&*a, "t", "x", None, plain(json!({"v": "base"}))).await;
        replicate(&*a, &*b).await;
        let tip_a = apply(&*a, r1, &case.a).await;
        let tip_b = apply(&*b, r1, &case.b).await;
        // C hears A first, D hears B first; then A and B exchange.
        replicate(&*a, &*c).await;
        replicate(&*b, &*c).await;
        replicate(&*b, &*d).await;
        replicate(&*a, &*d).await;
        replicate(&*b, &*a).await;
        replicate(&*a, &*b).await;
        // A side that made no edit has no leaf of its own: r1 is then an ancestor of the other tip.
        let mut tips: Vec<(RevId, bool)> = [(&case.a, tip_a), (&case.b, tip_b)]
            .into_iter()
            .filter(|(steps, _)| !steps.is_empty())
            .map(|(_, tip)| tip)
            .collect();
        if tips.is_empty() {
            tips.push((r1, false));
        }
        tips.dedup();
        let winner = winner_of(&tips);
        let winner_deleted = tips.iter().any(|t| t.0 == winner && t.1);
        let mut conflicts: Vec<RevId> = tips.iter().filter(|t| t.0 != winner && !t.1).map(|t| t.0).collect();
        conflicts.sort();
        let mut leaves: Vec<RevId> = tips.iter().map(|t| t.0).collect();
        leaves.sort();
        let winning_steps = if winner == tip_a.0 { &case.a } else { &case.b };
        let expected_body = match winning_steps.last() {
            _ if winner_deleted => None,
            Some(Step::Put(body)) => Some(plain(body.clone())),
            _ => unreachable!("{name}: a live winner ends with a put"),
        };
        let expected = (winner, winner_deleted, conflicts, leaves, expected_body);
        for (replica, db) in [("A", &a), ("B", &b), ("C", &c), ("D", &d)] {
            assert_eq!(reconciled(&**db).await, expected, "{name}: replica {replica}");
            let count = ok(db.info().await, "info").record_count;
            assert_eq!(count, u64::from(!winner_deleted), "{name}: replica {replica} counts its live records");
        }
    }
}

/// A and B hold `base` at r1 in a table with `policy`; A then writes `on_a` and B `on_b`, both on r1;
/// then they exchange. Returns the databases and the two branch revs.
async fn diverge(
    f: &dyn Factory,
    policy: ReconcilePolicy,
    base: serde_json::Value,
    on_a: serde_json::Value,
    on_b: serde_json::Value,
) -> (Arc<dyn Database>, Arc<dyn Database>, RevId, RevId) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    table_with(&*a, "t", policy).await;
    let r1 = put(&*a, "t", "x", None, plain(base)).await;
    replicate(&*a, &*b).await;
    assert_eq!(ok(b.get_table("t").await, "replicated table").policy, policy, "the policy replicates");
    let ra = put(&*a, "t", "x", Some(r1), plain(on_a)).await;
    let rb = put(&*b, "t", "x", Some(r1), plain(on_b)).await;
    assert_ne!(ra, rb);
    replicate(&*a, &*b).await;
    replicate(&*b, &*a).await;
    (a, b, ra, rb)
}

/// Under `merge-fields`, fields changed on one branch only all survive the merge.
pub async fn merge_fields_merges_disjoint_edits(f: &dyn Factory) {
    let base = json!({"a": 1, "b": 1, "c": 1, "d": 1});
    let on_a = json!({"a": 2, "b": 1, "c": 1, "d": 1});
    let on_b = json!({"a": 1, "b": 2, "c": 1});
    let (a, b, ra, rb) = diverge(f, ReconcilePolicy::MergeFields, base, on_a, on_b).await;
    let (winner, loser) = if ra.to_string() > rb.to_string() { (ra, rb) } else { (rb, ra) };
    for (name, db) in [("A", &a), ("B", &b)] {
        let record = get(&**db, "t", "x").await;
        assert_eq!(record.rev, winner, "replica {name}");
        assert_eq!(record.attributes, plain(json!({"a": 2, "b": 2, "c": 1})), "replica {name}: merged body");
        assert_eq!(record.conflicts, Some(vec![loser]), "replica {name}");
        assert_eq!(record.field_conflicts, Some(vec![]), "replica {name}");
    }
}

/// Under `merge-fields`, a field changed differently on both branches takes the winner's value and
/// is listed in `field_conflicts`; the other fields still merge.
pub async fn merge_fields_reports_overlapping_edits(f: &dyn Factory) {
    let base = json!({"a": 1, "b": 1, "c": "base", "same": 1});
    let on_a = json!({"a": 2, "b": 1, "c": "from a", "same": 2});
    let on_b = json!({"a": 1, "b": 2, "c": "from b", "same": 2});
    let (a, b, ra, rb) = diverge(f, ReconcilePolicy::MergeFields, base, on_a, on_b).await;
    let a_wins = ra.to_string() > rb.to_string();
    let (winner, loser) = if a_wins { (ra, rb) } else { (rb, ra) };
    let c = if a_wins { "from a" } else { "from b" };
    for (name, db) in [("A", &a), ("B", &b)] {
        let record = get(&**db, "t", "x").await;
        assert_eq!(record.rev, winner, "replica {name}");
        let merged = plain(json!({"a": 2, "b": 2, "c": c, "same": 2}));
        assert_eq!(record.attributes, merged, "replica {name}: the winner's value for c, the same change once");
        assert_eq!(record.conflicts, Some(vec![loser]), "replica {name}");
        assert_eq!(record.field_conflicts, Some(vec!["c".to_owned()]), "replica {name}");
    }
}

/// Under `merge-fields`, the next local write based on the winner carries the merged body and closes
/// the other branch with a tombstone in the same transaction; the closure replicates.
pub async fn merge_fields_next_write_on_the_winner_closes_other_branches(f: &dyn Factory) {
    let base = json!({"a": 1, "b": 1});
    let (a, b, ra, rb) =
        diverge(f, ReconcilePolicy::MergeFields, base, json!({"a": 2, "b": 1}), json!({"a": 1, "b": 2})).await;
    let (winner, loser) = if ra.to_string() > rb.to_string() { (ra, rb) } else { (rb, ra) };
    let merged = get(&*a, "t", "x").await;
    assert_eq!(merged.attributes, plain(json!({"a": 2, "b": 2})));
    let mut body = merged.attributes.clone();
    body.insert("c".into(), outpost_api::Value::Int(3));
    let seq = update_seq(&*a).await;
    let r3 = put(&*a, "t", "x", Some(winner), body.clone()).await;
    assert_eq!(r3, revision_id("t", "x", Some(&winner), false, &body));
    assert_eq!(update_seq(&*a).await, seq + 2, "the write and the tombstone closing the other branch");
    let closed = revision_id("t", "x", Some(&loser), true, &Attributes::new());
    let mut leaves = vec![r3, closed];
    leaves.sort();
    replicate(&*a, &*b).await;
    for (name, db) in [("A", &a), ("B", &b)] {
        let record = get(&**db, "t", "x").await;
        assert_eq!((record.rev, &record.attributes), (r3, &body), "replica {name}");
        assert_eq!(record.conflicts, Some(vec![]), "replica {name}");
        assert_eq!(record.field_conflicts, Some(vec![]), "replica {name}");
        let mut got = change_of(&**db, "t", "x").await.leaves;
        got.sort();
        assert_eq!(got, leaves, "replica {name}: the loser is closed by a tombstone");
    }
}

/// Under `keep-conflicts`, the winner's body is read, the other leaf is listed, and a write on the
/// winner that resolves nothing keeps the conflict.
pub async fn keep_conflicts_keeps_conflicts_until_resolved(f: &dyn Factory) {
    let (a, _b, ra, rb) = diverge(
        f,
        ReconcilePolicy::KeepConflicts,
        json!({"v": 0}),
        json!({"v": "a", "a": 1}),
        json!({"v": "b", "b": 1}),
    )
    .await;
    let (winner, loser) = if ra.to_string() > rb.to_string() { (ra, rb) } else { (rb, ra) };
    let record = get(&*a, "t", "x").await;
    let winner_body = if winner == ra { json!({"v": "a", "a": 1}) } else { json!({"v": "b", "b": 1}) };
    assert_eq!((record.rev, &record.attributes), (winner, &plain(winner_body)));
    assert_eq!(record.conflicts, Some(vec![loser]));
    assert_eq!(record.field_conflicts, Some(vec![]));
    let r3 = put(&*a, "t", "x", Some(winner), plain(json!({"v": "next"}))).await;
    let record = get(&*a, "t", "x").await;
    assert_eq!(record.rev, r3);
    assert_eq!(record.conflicts, Some(vec![loser]), "a plain write resolves nothing");
    // The losing leaf may be edited too: it is a current leaf.
    let r3b = put(&*a, "t", "x", Some(loser), plain(json!({"v": "loser edited"}))).await;
    assert_eq!(r3b.generation, 3);
}

/// `put_record` with `resolves` writes on the winner's branch and tombstones the named leaves; a
/// rev that is not a conflicting leaf cannot be resolved.
pub async fn explicit_resolution_leaves_no_conflicts(f: &dyn Factory) {
    for with_rev in [true, false] {
        let (a, b, ra, rb) =
            diverge(f, ReconcilePolicy::KeepConflicts, json!({"v": 0}), json!({"v": "a"}), json!({"v": "b"})).await;
        let (winner, loser) = if ra.to_string() > rb.to_string() { (ra, rb) } else { (rb, ra) };
        let seq = update_seq(&*a).await;
        let bogus = PutRecord {
            id: Some("x".into()),
            rev: Some(winner),
            attributes: plain(json!({"v": "bogus"})),
            resolves: vec![winner],
        };
        crate::support::expect_err(
            a.put_record("t", bogus).await,
            outpost_api::ErrorKind::Conflict,
            "resolving the parent",
        );
        assert_eq!(update_seq(&*a).await, seq, "a failed resolution stores nothing");
        let body = plain(json!({"v": "resolved"}));
        let resolve = PutRecord {
            id: Some("x".into()),
            rev: with_rev.then_some(winner),
            attributes: body.clone(),
            resolves: vec![loser],
        };
        let r3 = ok(a.put_record("t", resolve).await, "resolve").rev;
        assert_eq!(r3, revision_id("t", "x", Some(&winner), false, &body), "written on the winner's branch");
        assert_eq!(update_seq(&*a).await, seq + 2);
        replicate(&*a, &*b).await;
        for (name, db) in [("A", &a), ("B", &b)] {
            let record = get(&**db, "t", "x").await;
            assert_eq!((record.rev, record.attributes), (r3, body.clone()), "replica {name} (rev given: {with_rev})");
            assert_eq!(record.conflicts, Some(vec![]), "replica {name} (rev given: {with_rev})");
        }
    }
}

/// A record's reconciled state depends only on the revisions held — its own and its table's
/// definition — not on whether a policy change arrived before or after the record's revisions.
pub async fn reconciled_state_does_not_depend_on_when_the_policy_changed(f: &dyn Factory) {
    let (a, b, c, d) = (f.fresh().await, f.fresh().await, f.fresh().await, f.fresh().await);
    let v1 = crate::support::table(&*a, "t").await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"a": 1, "b": 1}))).await;
    replicate(&*a, &*b).await;
    let ra = put(&*a, "t", "x", Some(r1), plain(json!({"a": 2, "b": 1}))).await;
    let rb = put(&*b, "t", "x", Some(r1), plain(json!({"a": 1, "b": 2}))).await;
    replicate(&*b, &*a).await;
    let update = outpost_api::TableUpdate { policy: Some(ReconcilePolicy::MergeFields), ..Default::default() };
    let v2 = ok(a.update_table("t", update).await, "switch to merge-fields");
    // C hears of the policy change after the record's revisions, D before them.
    copy(&*a, &*c, "_tables", "t", &[v1.rev]).await;
    copy(&*a, &*c, "t", "x", &[r1, ra, rb]).await;
    copy(&*a, &*c, "_tables", "t", &[v2.rev]).await;
    copy(&*a, &*d, "_tables", "t", &[v1.rev, v2.rev]).await;
    copy(&*a, &*d, "t", "x", &[r1, ra, rb]).await;
    let expected = get(&*d, "t", "x").await;
    assert_eq!(expected.attributes, plain(json!({"a": 2, "b": 2})), "D merges under merge-fields");
    for (name, db) in [("A", &a), ("C", &c)] {
        assert_eq!(ok(db.get_table("t").await, "get_table").policy, ReconcilePolicy::MergeFields);
        assert_eq!(get(&**db, "t", "x").await, expected, "replica {name} holds the same revisions as D");
    }
}
