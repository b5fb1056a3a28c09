//! The planner fed arbitrary `put_revisions` batches against a small set of records: revisions built
//! from the fuzzer's choices (parents picked among what is held, ancestries cut or broken, hashes
//! right or wrong, deletions, table definitions), applied batch by batch to an in-memory store the way
//! a backend would. After each batch the invariants of ARCHITECTURE.md are checked: seqs consecutive
//! from the head, the chain folded over every event, each record's state its tree's winner, trees
//! well-formed, only revisions whose hash verifies stored with a body.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outpost_api::{Attributes, Body, ChainHash, Epoch, RevId, RevisionData, Uuid, Value};
use outpost_engine::hash::{genesis_chain, revision_id};
use outpost_engine::plan::Planner;
use outpost_engine::reconcile::outcome;
use outpost_engine::storage::{Head, RecordKey, WriteSet};
use outpost_engine::tree::{RevisionNode, RevisionTree};

#[derive(Arbitrary, Debug)]
struct Revision {
    /// Which of four records (one a table definition).
    record: u8,
    /// Which held revision is the parent (none: a first revision).
    parent: Option<u8>,
    deleted: bool,
    value: i16,
    /// Cut the ancestry to this many ids.
    cut: Option<u8>,
    /// Damage: 0 none, 1 a wrong hash, 2 a generation off by one, 3 an ancestry out of order.
    damage: u8,
}

#[derive(Arbitrary, Debug)]
struct Batch {
    revisions: Vec<Revision>,
    /// Send each revision twice (replays are no-ops).
    replay: bool,
}

const RECORDS: [(&str, &str); 4] = [("t", "a"), ("t", "b"), ("u", "c"), ("_tables", "t")];

/// What a backend holds: trees (each body its stored JSON, as the planner takes them), head.
struct Store {
    head: Head,
    trees: HashMap<RecordKey, RevisionTree<String>>,
}

impl Store {
    fn new() -> Self {
        let uuid = Uuid::from_u128(7);
        let head = Head { update_seq: 0, chain: genesis_chain(uuid), epochs: vec![Epoch { uuid, start_seq: 1 }] };
        Store { head, trees: HashMap::new() }
    }

    /// Apply a write set as a backend does (stubs never overwrite a body; a stub learns its parent).
    fn apply(&mut self, writes: &WriteSet) {
        for r in &writes.revisions {
            let tree = self.trees.entry((r.table.clone(), r.id.clone())).or_default();
            let known = tree.get(&r.rev).cloned();
            let node = match (r.event, known) {
                (None, Some(mut held)) => {
                    held.parent = held.parent.or(r.parent);
                    held
                }
                (None, None) => RevisionNode::stub(r.parent),
                (Some((seq, _)), held) => RevisionNode {
                    parent: held.and_then(|h| h.parent).or(r.parent),
                    deleted: r.deleted,
                    body: {
                        let json = r.body.clone().expect("an event has a body");
                        Body::from_json(&json).expect("a stored body parses");
                        Some(json)
                    },
                    seq: Some(seq),
                    foreign: r.foreign,
                },
            };
            tree.insert(r.rev, node);
        }
        if let Some((seq, chain)) = writes.head {
            self.head.update_seq = seq;
            self.head.chain = chain;
        }
    }
}

fn body(value: i16) -> Attributes {
    let mut a = Attributes::new();
    a.insert("n".into(), Value::Int(value.into()));
    a
}

/// The revision the fuzzer describes, against what `store` holds.
fn build(store: &Store, r: &Revision) -> RevisionData {
    let (table, id) = RECORDS[usize::from(r.record) % RECORDS.len()];
    let tree = store.trees.get(&(table.to_owned(), id.to_owned()));
    let held: Vec<RevId> = tree.map(|t| t.iter().map(|(rev, _)| *rev).collect()).unwrap_or_default();
    let parent = r.parent.and_then(|p| held.get(usize::from(p) % held.len().max(1)).copied());
    let mut ancestry = match (parent, tree) {
        (Some(p), Some(t)) => t.ancestry(&p),
        _ => vec![],
    };
    if ancestry.first() != parent.as_ref() {
        ancestry.insert(0, parent.expect("an ancestry starts at its parent"));
    }
    // A table definition's body is a definition: an empty one is valid.
    // A tombstone's body is empty.
    let attributes = if table == "_tables" || r.deleted { Attributes::new() } else { body(r.value) };
    let mut rev = revision_id(table, id, parent.as_ref(), r.deleted, &attributes);
    if let Some(cut) = r.cut {
        ancestry.truncate(usize::from(cut).max(1));
    }
    match r.damage % 8 {
        1 => rev.hash[0] ^= 1,
        2 => rev.generation += 1,
        3 if ancestry.len() > 1 => ancestry.swap(0, 1),
        _ => {}
    }
    RevisionData {
        table: table.into(),
        id: id.into(),
        rev,
        deleted: r.deleted,
        attributes: (!r.deleted).then(|| Body::new(&attributes)),
        ancestry,
        foreign: None,
    }
}

fn check(store: &Store, writes: &WriteSet, before: (u64, ChainHash)) {
    // Seqs consecutive from the head, the chain folded over them.
    let (mut seq, mut chain) = before;
    for r in writes.revisions.iter().filter(|r| r.event.is_some()) {
        let (s, c) = r.event.expect("filtered");
        assert_eq!(s, seq + 1, "seqs are consecutive");
        chain = chain.next_event(s, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref());
        assert_eq!(c, chain, "the chain folds over every event");
        seq = s;
        let parent = r.parent;
        let body: Attributes = serde_json::from_str(r.body.as_deref().expect("an event has a body")).expect("parses");
        assert_eq!(
            revision_id(&r.table, &r.id, parent.as_ref(), r.deleted, &body),
            r.rev,
            "only verified revisions are stored"
        );
    }
    assert_eq!(writes.head.map_or(before, |h| h), (seq, chain), "the head is the last event");
    for state in &writes.states {
        let tree = &store.trees[&(state.table.clone(), state.id.clone())];
        tree.check().expect("a stored tree is well-formed");
        let (winner, _, _) = outcome(tree).expect("a stored tree reconciles");
        assert_eq!(state.rev, winner, "the stored state is the winner");
        assert_eq!(state.deleted, tree.get(&winner).expect("the winner is held").deleted);
        assert!(tree.leaves().contains(&state.rev), "the winner is a leaf");
    }
}

fuzz_target!(|batches: Vec<Batch>| {
    let mut store = Store::new();
    for batch in batches.iter().take(16) {
        let revisions: Vec<RevisionData> = batch.revisions.iter().take(32).map(|r| build(&store, r)).collect();
        let mut planner = Planner::new(&store.head, store.trees.clone(), revisions.len());
        let mut ok = true;
        for r in &revisions {
            let limited = outpost_engine::validate::replicated(r.clone(), &Default::default());
            let result = limited.and_then(|r| planner.replicated(r));
            if batch.replay {
                if let Ok(r) = outpost_engine::validate::replicated(r.clone(), &Default::default()) {
                    if result.is_ok() {
                        assert_eq!(planner.replicated(r).ok(), Some(false), "a replay adds nothing");
                    }
                }
            }
            // A refused revision refuses the whole batch, as `put_revisions` does.
            ok &= result.is_ok();
        }
        if !ok {
            continue;
        }
        let before = (store.head.update_seq, store.head.chain);
        let writes = planner.finish().expect("a planned batch finishes");
        store.apply(&writes);
        check(&store, &writes, before);
    }
});
