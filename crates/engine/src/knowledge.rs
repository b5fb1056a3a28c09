//! The knowledge and fork rules (SPEC §6, §8), pure: which rows a knowledge update records, whether
//! rows about this database's own uuid show that its history forked, and how the rows are stamped
//! when stored. Fed the head and the chain hashes the caller loaded, so each rule is a function of
//! its inputs and tested with a case table.

use std::collections::{HashMap, HashSet};

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
}
