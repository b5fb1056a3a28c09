//! Property tests (SPEC §3, §4.4, §16): the reconciled state of a record does not depend on the order
//! in which its revisions arrive — in the engine's pure planner and in real databases — and the wire
//! and plain JSON forms round-trip.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use outpost_api::{
    Attributes, Body, ChainHash, Epoch, ErrorKind, GetOptions, Limits, ReconcilePolicy, RecordRevs, RevId,
    RevisionData, Uuid, Value,
};
use outpost_engine::canonical::encode_attributes;
use outpost_engine::hash::revision_id;
use outpost_engine::plan::Planner;
use outpost_engine::reconcile::{reconcile, Reconciled};
use outpost_engine::storage::Head;
use outpost_engine::tree::RevisionTree;
use outpost_engine::validate::{self, VerifiedRevision};
use outpost_tests::support::{change_of, table_with, winner_of};
use outpost_tests::{Factory, SqliteFactory};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------------
// Random revision histories of one record.

/// One revision to make: on an earlier revision (or as a new root), a tombstone or a body, sent with
/// its ancestry truncated to `keep` entries (at least the parent).
#[derive(Clone, Debug)]
struct Edit {
    parent: Option<Index>,
    deleted: bool,
    body: BTreeMap<String, i64>,
    keep: Index,
}

fn edit() -> impl Strategy<Value = Edit> {
    let field = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned);
    (
        prop::option::weighted(0.85, any::<Index>()),
        prop::bool::weighted(0.2),
        prop::collection::btree_map(field, 0i64..3, 0..3),
        any::<Index>(),
    )
        .prop_map(|(parent, deleted, body, keep)| Edit { parent, deleted, body, keep })
}

/// The distinct revisions the edits make, parents before children, as `put_revisions` carries them.
fn history(edits: &[Edit]) -> Vec<RevisionData> {
    let mut made: Vec<(RevisionData, Vec<RevId>)> = Vec::new();
    for e in edits {
        let parent = e.parent.filter(|_| !made.is_empty()).map(|i| i.index(made.len()));
        let ancestry: Vec<RevId> = match parent {
            Some(p) => std::iter::once(made[p].0.rev).chain(made[p].1.iter().copied()).collect(),
            None => vec![],
        };
        let body: Attributes = if e.deleted {
            Attributes::new()
        } else {
            e.body.iter().map(|(k, v)| (k.clone(), Value::Int(*v))).collect()
        };
        let rev = revision_id("t", "x", ancestry.first(), e.deleted, &body);
        if made.iter().any(|(r, _)| r.rev == rev) {
            continue;
        }
        let mut sent = ancestry.clone();
        if !sent.is_empty() {
            sent.truncate(1 + e.keep.index(sent.len()));
        }
        let data = RevisionData {
            table: "t".into(),
            id: "x".into(),
            rev,
            deleted: e.deleted,
            attributes: Some(Body::new(&body)),
            ancestry: sent,
            foreign: None,
        };
        made.push((data, ancestry));
    }
    made.into_iter().map(|(d, _)| d).collect()
}

/// A history and two orders to deliver it in.
fn history_and_two_orders() -> impl Strategy<Value = (Vec<RevisionData>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(edit(), 1..12).prop_flat_map(|edits| {
        let revisions = history(&edits);
        let order: Vec<usize> = (0..revisions.len()).collect();
        (Just(revisions), Just(order.clone()).prop_shuffle(), Just(order).prop_shuffle())
    })
}

/// Deliver revisions to the engine's planner in `order`; returns the record's tree and the number of
/// revision events planned.
fn plan(revisions: &[RevisionData], order: &[usize]) -> (RevisionTree, usize) {
    let head =
        Head { update_seq: 0, chain: ChainHash([0; 32]), epochs: vec![Epoch { uuid: Uuid::nil(), start_seq: 1 }] };
    let mut planner = Planner::new(&head, HashMap::new(), revisions.len());
    let verified: Vec<VerifiedRevision> = revisions
        .iter()
        .map(|r| validate::replicated(r.clone(), &Limits::default()).unwrap_or_else(|e| panic!("{r:?}: {e}")))
        .collect();
    for &i in order {
        let new = planner.replicated(verified[i].clone()).unwrap_or_else(|e| panic!("{:?}: {e}", revisions[i]));
        assert!(new, "revision {} arrives once and is new", revisions[i].rev);
    }
    // A replay of everything is a no-op.
    for r in &verified {
        assert!(!planner.replicated(r.clone()).expect("replay"), "replaying {} is a no-op", r.rev());
    }
    let events = planner.events();
    // The planner holds each body as its stored JSON: read back as attributes.
    let tree = planner.tree("t", "x").expect("the record has a tree").clone();
    (tree.map_bodies(|json| Body::from_json(&json).expect("a stored body").attributes()), events)
}

/// The tree without local seqs (which do depend on arrival order).
fn shape(tree: &RevisionTree) -> Vec<(RevId, Option<RevId>, bool, Option<Attributes>)> {
    tree.iter().map(|(r, n)| (*r, n.parent, n.deleted, n.body.clone())).collect()
}

/// What the spec says the reconciled state is, checked independently where it is simple: the leaves
/// are the revisions no other names as parent; the winner follows the §4.3 rule.
fn check_against_the_rule(revisions: &[RevisionData], r: &Reconciled<'_>) {
    let parents: Vec<RevId> = revisions.iter().filter_map(|d| d.ancestry.first().copied()).collect();
    let leaves: Vec<(RevId, bool)> =
        revisions.iter().filter(|d| !parents.contains(&d.rev)).map(|d| (d.rev, d.deleted)).collect();
    let mut leaf_ids: Vec<RevId> = leaves.iter().map(|l| l.0).collect();
    leaf_ids.sort();
    assert_eq!(r.leaves, leaf_ids);
    assert_eq!(r.winner, winner_of(&leaves));
    let mut conflicts: Vec<RevId> = leaves.iter().filter(|(rev, d)| !d && *rev != r.winner).map(|l| l.0).collect();
    conflicts.sort();
    assert_eq!(r.conflicts, conflicts);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The planner reaches the same tree and the same reconciled state, under both policies, whatever
    /// the order revisions (with truncated ancestry) arrive in; each revision is one event.
    #[test]
    fn reconciled_state_does_not_depend_on_arrival_order((revisions, first, second) in history_and_two_orders()) {
        let (tree_1, events_1) = plan(&revisions, &first);
        let (tree_2, events_2) = plan(&revisions, &second);
        prop_assert_eq!(events_1, revisions.len());
        prop_assert_eq!(events_2, revisions.len());
        prop_assert_eq!(shape(&tree_1), shape(&tree_2));
        for policy in [ReconcilePolicy::KeepConflicts, ReconcilePolicy::MergeFields] {
            let r1 = reconcile(&tree_1, policy).expect("reconcile");
            let r2 = reconcile(&tree_2, policy).expect("reconcile");
            check_against_the_rule(&revisions, &r1);
            prop_assert_eq!(&r1, &r2);
            if r1.conflicts.is_empty() || r1.deleted {
                prop_assert!(r1.field_conflicts.is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The same on real databases.

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
    })
}

/// Put the revisions into a fresh database in `order`, in batches of `batch`; returns what reads say.
async fn deliver(
    factory: &SqliteFactory,
    policy: ReconcilePolicy,
    revisions: &[RevisionData],
    order: &[usize],
    batch: usize,
) -> (Result<outpost_api::Record, ErrorKind>, outpost_api::Change) {
    let db = factory.fresh().await;
    table_with(&*db, "t", policy).await;
    for chunk in order.chunks(batch) {
        let revisions: Vec<RevisionData> = chunk.iter().map(|&i| revisions[i].clone()).collect();
        db.put_revisions(revisions, None).await.expect("put_revisions");
    }
    let all: Vec<RevId> = revisions.iter().map(|r| r.rev).collect();
    let missing = db.revs_diff(vec![RecordRevs { table: "t".into(), id: "x".into(), revs: all }]).await;
    assert!(missing.expect("revs_diff").is_empty(), "every revision is held");
    let options = GetOptions { conflicts: true, ..GetOptions::default() };
    let record = db.get_record("t", "x", options).await.map_err(|e| e.kind);
    (record, change_of(&*db, "t", "x").await)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Two databases given the same revisions in different orders and batchings read the same record,
    /// and it is what the engine's pure reconcile says.
    #[test]
    fn databases_converge_whatever_the_arrival_order(
        (revisions, first, second) in history_and_two_orders(),
        merge in any::<bool>(),
        batch in 1usize..4,
    ) {
        let policy = if merge { ReconcilePolicy::MergeFields } else { ReconcilePolicy::KeepConflicts };
        let factory = SqliteFactory::new();
        let (read_1, change_1) = runtime().block_on(deliver(&factory, policy, &revisions, &first, 1));
        let (read_2, change_2) = runtime().block_on(deliver(&factory, policy, &revisions, &second, batch));
        prop_assert_eq!(&read_1, &read_2);
        prop_assert_eq!((change_1.rev, change_1.deleted, &change_1.leaves), (change_2.rev, change_2.deleted, &change_2.leaves));
        let (tree, _) = plan(&revisions, &first);
        let expected = reconcile(&tree, policy).expect("reconcile");
        prop_assert_eq!((change_1.rev, change_1.deleted, &change_1.leaves), (expected.winner, expected.deleted, &expected.leaves));
        match read_1 {
            Ok(record) => {
                prop_assert!(!expected.deleted);
                prop_assert_eq!(record.rev, expected.winner);
                prop_assert_eq!(record.attributes, expected.body.into_owned());
                prop_assert_eq!(record.conflicts, Some(expected.conflicts));
                prop_assert_eq!(record.field_conflicts, Some(expected.field_conflicts));
            }
            Err(kind) => {
                prop_assert_eq!(kind, ErrorKind::NotFound);
                prop_assert!(expected.deleted);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Wire and plain JSON.

/// Decimal text: optional sign, digits with leading zeros, a fraction with trailing zeros, an exponent.
fn decimal_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", "-", "+"]),
        "[0-9]{0,20}",
        prop::option::of("[0-9]{0,20}"),
        prop::option::of((prop::sample::select(vec!["e", "E"]), prop::sample::select(vec!["", "+", "-"]), 0u32..40)),
    )
        .prop_filter("a decimal has a digit", |(_, int, frac, _)| {
            !int.is_empty() || frac.as_ref().is_some_and(|f| !f.is_empty())
        })
        .prop_map(|(sign, int, frac, exp)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            let exp = exp.map(|(e, s, n)| format!("{e}{s}{n}")).unwrap_or_default();
            format!("{sign}{int}{frac}{exp}")
        })
}

/// RFC 3339 text of an instant in years 0001–9000, at a random offset.
fn timestamp_text() -> impl Strategy<Value = String> {
    (-62_000_000_000i64..253_000_000_000, 0u32..1_000_000_000, -1439i32..1440).prop_map(|(secs, nanos, minutes)| {
        let offset = time::UtcOffset::from_whole_seconds(minutes * 60).expect("offset within a day");
        time::OffsetDateTime::from_unix_timestamp(secs)
            .expect("in range")
            .replace_nanosecond(nanos)
            .expect("nanos in range")
            .to_offset(offset)
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats")
    })
}

/// Valid wire JSON of any value, often in non-canonical text.
fn wire_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let leaf = prop_oneof![
        Just(json!({"null": true})),
        any::<bool>().prop_map(|b| json!({ "bool": b })),
        (any::<i64>(), 0usize..3, any::<bool>()).prop_map(|(i, zeros, plus)| {
            let sign = if i < 0 {
                "-"
            } else if plus {
                "+"
            } else {
                ""
            };
            json!({ "int": format!("{sign}{}{}", "0".repeat(zeros), i.unsigned_abs()) })
        }),
        (any::<f64>().prop_filter("finite", |f| f.is_finite()), 0..3).prop_map(|(f, style)| {
            let text = match style {
                0 => format!("{f}"),
                1 => format!("{f:e}"),
                _ => format!("{f:E}"),
            };
            json!({ "float": text })
        }),
        decimal_text().prop_map(|d| json!({ "decimal": d })),
        any::<String>().prop_map(|s| json!({ "string": s })),
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| serde_json::to_value(Value::Bytes(b)).expect("bytes serialise")),
        timestamp_text().prop_map(|t| json!({ "timestamp": t })),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| json!({ "list": items })),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| json!({ "map": m.into_iter().collect::<serde_json::Map<_, _>>() })),
        ]
    })
}

/// Values plain JSON can carry without losing their type.
fn plain_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map(any::<String>(), inner, 0..4).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Wire JSON → value → JSON → value is a fixed point after the first parse: canonical text
    /// re-parses to the same value, prints the same, and has the same canonical bytes.
    #[test]
    fn canonicalisation_is_idempotent(wire in wire_value()) {
        let first: Value = serde_json::from_value(wire.clone()).map_err(|e| TestCaseError::fail(format!("{wire}: {e}")))?;
        let canonical = serde_json::to_value(&first).expect("serialises");
        let second: Value = serde_json::from_value(canonical.clone()).expect("canonical text re-parses");
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(serde_json::to_value(&second).expect("serialises"), canonical.clone());
        let bytes = |v: &Value| encode_attributes(&Attributes::new().with("v", v.clone()));
        prop_assert_eq!(bytes(&first), bytes(&second));
        let as_attributes: Attributes = serde_json::from_value(serde_json::json!({ "v": wire })).expect("attributes");
        prop_assert_eq!(&as_attributes["v"], &first);
    }

    /// Plain JSON round-trips attributes of null, bool, int, string, list and map values.
    #[test]
    fn plain_json_round_trips(attributes in prop::collection::btree_map("[^_].{0,8}", plain_value(), 0..5)) {
        let attributes = Attributes(attributes);
        let back = Attributes::from_plain(&attributes.to_plain()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, attributes);
    }
}
