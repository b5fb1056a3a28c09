//! The knowledge and fork rules (SPEC §6, §8), pure: which rows a knowledge update records, whether
//! rows about this database's own uuid show that its history forked, how the rows are stamped when
//! stored, and which stored rows a write lets go (SPEC §18: a few per peer epoch). Fed the head and the chain hashes the caller loaded, so each rule is a function of
//! its inputs and tested with a case table.

use std::collections::{BTreeSet, HashMap, HashSet};

use outpost_api::{ChainHash, Error, KnowledgeRow, KnowledgeUpdate, Result, Uuid};

use crate::storage::Head;

/// The rows a knowledge update records: the direct row about the source, and the source's own rows
/// with `via` set (local seqs are set when stored, by [`stamped`]). Only knowledge the source held at
/// the drained point may travel (SPEC §8).
pub fn rows(update: KnowledgeUpdate) -> Result<Vec<KnowledgeRow>> {
    let direct = KnowledgeRow {
        peer: update.source,
        peer_seq: update.source_seq,
        peer_chain: update.source_chain,
        local_seq: 0,
        via: None,
    };
    let mut rows = vec![direct];
    for row in update.imported {
        if row.local_seq > update.source_seq {
            return Err(Error::invalid(format!(
                "imported knowledge about {} holds from the source's seq {}, after the drained seq {}",
                row.peer, row.local_seq, update.source_seq
            )));
        }
        rows.push(KnowledgeRow { via: Some(update.source), ..row });
    }
    Ok(rows)
}

/// The seqs whose chain hashes [`fork_point`] compares: those of rows about the uuid in force that
/// this database has reached, each once, in order.
pub fn seqs_to_check(head: &Head, rows: &[KnowledgeRow]) -> Vec<u64> {
    let current = head.uuid();
    let mut seqs: Vec<u64> =
        rows.iter().filter(|r| r.peer == current && r.peer_seq <= head.update_seq).map(|r| r.peer_seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// SPEC §6: whether knowledge rows about this database's current uuid contradict its own chain
/// (`chains`: its chain hash at each seq of [`seqs_to_check`]), which means another copy of this
/// database (a copied file that diverged) wrote under the same uuid. Returns the uuid checked and the
/// seq a new epoch must start at: the seq after the highest one where a presented row matches this
/// database's chain (bounded below by the current epoch's start, which any copy under this uuid
/// shares), so no peer can mistake the fork's seqs for ours.
pub fn fork_point(head: &Head, rows: &[KnowledgeRow], chains: &HashMap<u64, ChainHash>) -> Option<(Uuid, u64)> {
    let current = *head.epochs.last().expect("a database has at least one epoch");
    let mut agreeing = Vec::new();
    let mut first_contradiction = None::<u64>;
    for row in rows.iter().filter(|r| r.peer == current.uuid) {
        let agrees = row.peer_seq <= head.update_seq && chains.get(&row.peer_seq) == Some(&row.peer_chain);
        if agrees {
            agreeing.push(row.peer_seq);
        } else {
            first_contradiction = Some(first_contradiction.map_or(row.peer_seq, |s| s.min(row.peer_seq)));
        }
    }
    let contradiction = first_contradiction?;
    let agreed = agreeing.into_iter().filter(|s| *s < contradiction).max().unwrap_or(0);
    let start_seq = (agreed + 1).max(current.start_seq).min(head.update_seq + 1);
    Some((current.uuid, start_seq))
}

/// The rows to store with a write that leaves the database at `update_seq`: none about its own uuids
/// (every epoch of `head`), and each holding from `update_seq` on, the state after the write.
pub fn stamped(mut rows: Vec<KnowledgeRow>, head: &Head, update_seq: u64) -> Vec<KnowledgeRow> {
    let own: HashSet<Uuid> = head.epochs.iter().map(|e| e.uuid).collect();
    rows.retain(|r| !own.contains(&r.peer));
    for row in &mut rows {
        row.local_seq = update_seq;
    }
    rows
}

/// Rows about one peer epoch kept whatever their age: the newest this many by the peer's seq.
pub const KEEP_NEWEST: usize = 4;

/// The seqs of one peer's rows that are kept (SPEC §18: pruned to the newest few per peer epoch):
/// the [`KEEP_NEWEST`] newest and, at each level `i`, the newest row in each of the two latest
/// aligned spans of `2^i` seqs (`[k·2^i, (k+1)·2^i)`). So a peer keeps at most `KEEP_NEWEST` + 128
/// rows (a few dozen in practice) however long it replicates, with rows at every scale of age for a
/// start point that must fall back below a restore of the peer. The spans are aligned, so pruning
/// write by write keeps exactly what this rule keeps of all the rows ever written (rows come with
/// growing seqs): a row it lets go would never be kept again.
pub fn retained(seqs: &BTreeSet<u64>) -> BTreeSet<u64> {
    let Some(&newest) = seqs.last() else { return BTreeSet::new() };
    let mut kept: BTreeSet<u64> = seqs.iter().rev().take(KEEP_NEWEST).copied().collect();
    for level in 1..u64::BITS {
        let latest = newest >> level;
        for span in [latest, latest.saturating_sub(1)] {
            let low = span << level;
            let high = low.saturating_add((1 << level) - 1);
            if let Some(&seq) = seqs.range(low..=high).next_back() {
                kept.insert(seq);
            }
        }
        if latest == 0 {
            break;
        }
    }
    kept
}

/// The stored rows (peer, peer seq) a write that records `new` lets go: for each peer and source
/// (`via`) `new` names, the stored rows of that peer learned from that source which [`retained`] does
/// not keep among them and the new ones. Pruning per source means a source can only push out rows
/// it gave: rows learned directly, or through others, never go for rows a source made up. Other rows
/// are left as they are; new rows are always stored (pruned by a later write if ever).
pub fn forgotten(stored: &[KnowledgeRow], new: &[KnowledgeRow]) -> Vec<(Uuid, u64)> {
    let groups: BTreeSet<(Uuid, Option<Uuid>)> = new.iter().map(|r| (r.peer, r.via)).collect();
    let mut out = Vec::new();
    for (peer, via) in groups {
        let of = |r: &&KnowledgeRow| r.peer == peer && r.via == via;
        let held: BTreeSet<u64> = stored.iter().filter(of).map(|r| r.peer_seq).collect();
        let all: BTreeSet<u64> = held.iter().copied().chain(new.iter().filter(of).map(|r| r.peer_seq)).collect();
        let kept = retained(&all);
        out.extend(held.difference(&kept).map(|seq| (peer, *seq)));
    }
    out
}

#[cfg(test)]
mod tests {
    use outpost_api::Epoch;

    use super::*;

    fn uuid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn chain(n: u8) -> ChainHash {
        ChainHash([n; 32])
    }

    fn row(peer: u8, peer_seq: u64, chain_of: u8) -> KnowledgeRow {
        KnowledgeRow { peer: uuid(peer), peer_seq, peer_chain: chain(chain_of), local_seq: 0, via: None }
    }

    /// A database under uuid 2 since seq 5 (uuid 1 before), at seq 10, whose chain at seq s is `s`.
    fn head() -> Head {
        Head {
            update_seq: 10,
            chain: chain(10),
            epochs: vec![Epoch { uuid: uuid(1), start_seq: 1 }, Epoch { uuid: uuid(2), start_seq: 5 }],
        }
    }

    #[test]
    fn forks_are_found_by_contradicting_rows_about_the_current_uuid() {
        let cases: &[(&str, Vec<KnowledgeRow>, Option<u64>)] = &[
            ("no rows", vec![], None),
            ("a row that agrees", vec![row(2, 7, 7)], None),
            ("rows about another peer", vec![row(3, 7, 99)], None),
            ("rows about an older epoch of ours", vec![row(1, 3, 99)], None),
            (
                "a contradiction: the epoch restarts after the last agreement",
                vec![row(2, 7, 7), row(2, 9, 99)],
                Some(8),
            ),
            ("an agreement after the contradiction does not count", vec![row(2, 6, 99), row(2, 8, 8)], Some(5)),
            ("bounded below by the epoch's start", vec![row(2, 6, 99)], Some(5)),
            ("a row beyond our head contradicts", vec![row(2, 12, 12)], Some(5)),
            ("bounded above by the next seq", vec![row(2, 10, 10), row(2, 12, 12)], Some(11)),
        ];
        for (what, rows, expect) in cases {
            let head = head();
            let seqs = seqs_to_check(&head, rows);
            assert!(seqs.iter().all(|s| *s <= head.update_seq), "{what}: {seqs:?}");
            let chains: HashMap<u64, ChainHash> = seqs.iter().map(|s| (*s, chain(*s as u8))).collect();
            let got = fork_point(&head, rows, &chains);
            assert_eq!(got, expect.map(|s| (uuid(2), s)), "{what}");
        }
    }

    #[test]
    fn imported_rows_travel_only_from_the_drained_point() {
        let update = |imported| KnowledgeUpdate { source: uuid(3), source_seq: 5, source_chain: chain(5), imported };
        let rows = rows(update(vec![KnowledgeRow { local_seq: 5, ..row(4, 2, 2) }])).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].peer, rows[0].via), (uuid(3), None));
        assert_eq!((rows[1].peer, rows[1].via), (uuid(4), Some(uuid(3))));
        let late = super::rows(update(vec![KnowledgeRow { local_seq: 6, ..row(4, 2, 2) }])).unwrap_err();
        assert!(late.message.contains("after the drained seq 5"), "{late}");
    }

    #[test]
    fn stored_rows_hold_from_the_write_and_never_name_ourselves() {
        let stored = stamped(vec![row(1, 3, 3), row(2, 4, 4), row(3, 5, 5)], &head(), 12);
        assert_eq!(stored, vec![KnowledgeRow { local_seq: 12, ..row(3, 5, 5) }]);
    }

    #[test]
    fn a_peer_keeps_its_newest_rows_and_the_newest_of_the_latest_aligned_spans() {
        let seqs: BTreeSet<u64> = (1..=100).collect();
        let kept: Vec<u64> = retained(&seqs).into_iter().collect();
        // 100..97 the newest four; 95 the newest of [88, 96), [80, 96) and [64, 96); 63 of [0, 64).
        assert_eq!(kept, [63, 95, 97, 98, 99, 100]);
        assert!(retained(&BTreeSet::new()).is_empty());
        let few: BTreeSet<u64> = [3, 9].into();
        assert_eq!(retained(&few), few, "fewer than the newest few: all kept");
        let far: BTreeSet<u64> = [1, u64::MAX / 2, u64::MAX - 1].into();
        assert_eq!(retained(&far), far, "no overflow at the ends");
    }

    proptest::proptest! {
        /// Pruning write by write keeps what the rule keeps of every row ever written, and no more
        /// than its bound.
        #[test]
        fn pruning_write_by_write_keeps_what_the_rule_keeps(steps in proptest::collection::vec(1u64..5000, 1..300)) {
            let mut seq = 0;
            let mut stored: Vec<KnowledgeRow> = Vec::new();
            let mut all = BTreeSet::new();
            for step in steps {
                seq += step;
                all.insert(seq);
                let new = row(1, seq, 1);
                let gone = forgotten(&stored, std::slice::from_ref(&new));
                stored.retain(|r| !gone.contains(&(r.peer, r.peer_seq)));
                stored.push(new);
                let held: BTreeSet<u64> = stored.iter().map(|r| r.peer_seq).collect();
                proptest::prop_assert_eq!(&held, &retained(&all));
                proptest::prop_assert!(held.len() <= KEEP_NEWEST + 128);
                proptest::prop_assert!(held.contains(&seq));
            }
        }
    }

    #[test]
    fn a_write_lets_go_of_the_stored_rows_its_peers_no_longer_keep() {
        let stored: Vec<KnowledgeRow> = (1..=10).map(|s| row(1, s, 1)).chain([row(2, 5, 2)]).collect();
        let gone = forgotten(&stored, &[row(1, 11, 1)]);
        // Peer 1 keeps 11..8, and 7 (the newest of [4, 8) and of [0, 8)).
        assert!(gone.iter().all(|(p, _)| *p == uuid(1)), "only the peer written is pruned");
        let seqs: Vec<u64> = gone.iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert!(forgotten(&stored, &[]).is_empty());
    }

    #[test]
    fn a_source_cannot_push_out_rows_it_did_not_give() {
        // Rows about peer 1 learned directly; a source (uuid 9) sends rows about peer 1 far ahead.
        let direct: Vec<KnowledgeRow> = [100, 500, 1000].iter().map(|s| row(1, *s, 1)).collect();
        let forged: Vec<KnowledgeRow> = [1001, 1 << 40, (1 << 40) + 1, (1 << 40) + 2, (1 << 40) + 3]
            .iter()
            .map(|s| KnowledgeRow { via: Some(uuid(9)), ..row(1, *s, 1) })
            .collect();
        assert!(forgotten(&direct, &forged).is_empty(), "the direct rows stay");
        // The same source's own earlier rows are pruned against its new ones.
        let earlier: Vec<KnowledgeRow> =
            (1..=10).map(|s| KnowledgeRow { via: Some(uuid(9)), ..row(1, s, 1) }).collect();
        let stored: Vec<KnowledgeRow> = direct.iter().chain(&earlier).cloned().collect();
        let gone = forgotten(&stored, &[KnowledgeRow { via: Some(uuid(9)), ..row(1, 11, 1) }]);
        assert_eq!(gone.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    }
}
