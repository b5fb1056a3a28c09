//! Choosing where a pass starts (SPEC §8): the best of the target's resume point and the knowledge
//! it holds about any epoch of the source, each limited to its epoch's seq range and verified with
//! the source's chain hash. Starting at zero is always correct; a point only saves work, so a point
//! that cannot be verified is discarded (and reported), never trusted.

use outpost_api::{ChainHash, DbInfo, Epoch, ErrorKind, ReplicaSource, ReplicaTarget, Result, Uuid};

use crate::report::{Origin, StartPoint};

/// Most candidate points verified against the source in one start-point choice (each costs a call).
const MAX_VERIFICATIONS: usize = 16;

/// The uuid of the epoch that names `seq` in a database with these epochs: the last one whose
/// start is at or below it (seq 0, the genesis, belongs to the first).
pub fn epoch_of(epochs: &[Epoch], seq: u64) -> Uuid {
    epochs.iter().rev().find(|e| e.start_seq <= seq).unwrap_or(&epochs[0]).uuid
}

/// Whether `(uuid, seq)` names a state of the database `info` describes: `uuid` is one of its
/// epochs, `seq` lies in that epoch's range (up to the next epoch's start, or `update_seq` for the
/// current one).
pub fn names_state(info: &DbInfo, uuid: Uuid, seq: u64) -> bool {
    if seq > info.update_seq {
        return false;
    }
    info.epochs
        .iter()
        .enumerate()
        .filter(|(_, e)| e.uuid == uuid)
        .any(|(i, e)| e.start_seq <= seq && info.epochs[i + 1..].iter().all(|later| seq < later.start_seq))
}

/// The key a resume point is stored under in the target: the source epoch's uuid for a full pass; a
/// uuid derived from it and the table filter for a filtered one, so that a filtered pass never
/// makes a full pass skip what it did not copy.
pub fn resume_key(epoch: Uuid, tables: Option<&[String]>) -> Uuid {
    match tables {
        None => epoch,
        Some(tables) => {
            let mut names: Vec<&str> = tables.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            Uuid::new_v5(&epoch, format!("outpost/filtered-resume/v1:{}", names.join(",")).as_bytes())
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    epoch: Uuid,
    seq: u64,
    chain: ChainHash,
    origin: Origin,
    via: Option<Uuid>,
}

/// Choose and verify the start point of `source → target`. `requests` counts the calls made;
/// discarded points are described in `warnings`.
pub async fn choose<S, T>(
    source: &S,
    target: &T,
    info: &DbInfo,
    tables: Option<&[String]>,
    requests: &mut u64,
    warnings: &mut Vec<String>,
) -> Result<StartPoint>
where
    S: ReplicaSource + ?Sized,
    T: ReplicaTarget + ReplicaSource + ?Sized,
{
    let mut candidates = Vec::new();
    let mut epochs: Vec<Uuid> = info.epochs.iter().map(|e| e.uuid).collect();
    epochs.dedup();
    for &epoch in &epochs {
        *requests += 1;
        if let Some(point) = target.resume_point(resume_key(epoch, tables)).await? {
            candidates.push(Candidate {
                epoch,
                seq: point.source_seq,
                chain: point.source_chain,
                origin: Origin::Resume,
                via: None,
            });
        }
    }
    // Knowledge says the target holds everything of the source; a filtered pass copies only part of
    // it, but starting a filtered pass from knowledge is still right: all of it is held.
    *requests += 1;
    for row in target.knowledge(None).await? {
        if epochs.contains(&row.peer) {
            let origin = if row.via.is_some() { Origin::Transitive } else { Origin::Direct };
            candidates.push(Candidate {
                epoch: row.peer,
                seq: row.peer_seq,
                chain: row.peer_chain,
                origin,
                via: row.via,
            });
        }
    }
    // Highest first; at equal seqs report knowledge (direct, then transitive) over a resume point.
    let rank = |o: Origin| match o {
        Origin::Direct => 0,
        Origin::Transitive => 1,
        Origin::Resume | Origin::Zero => 2,
    };
    candidates.sort_by_key(|c| (std::cmp::Reverse(c.seq), rank(c.origin)));
    let mut verified: Vec<(u64, ChainHash, bool)> = Vec::new();
    for c in candidates.into_iter().filter(|c| c.seq > 0) {
        if !names_state(info, c.epoch, c.seq) {
            warnings.push(format!(
                "discarded {:?} point (epoch {}, seq {}): the source's epoch no longer covers that seq \
                 (restored from a backup, re-identified or forked)",
                c.origin, c.epoch, c.seq
            ));
            continue;
        }
        let known = verified.iter().find(|(seq, chain, _)| *seq == c.seq && *chain == c.chain).map(|v| v.2);
        let ok = match known {
            Some(ok) => ok,
            None if verified.len() >= MAX_VERIFICATIONS => break,
            None => {
                *requests += 1;
                let ok = match source.chain_hash_at(c.seq).await {
                    Ok(actual) => actual == c.chain,
                    Err(e) if e.kind == ErrorKind::NotFound => false,
                    Err(e) => return Err(e),
                };
                verified.push((c.seq, c.chain, ok));
                ok
            }
        };
        if ok {
            return Ok(StartPoint { seq: c.seq, origin: c.origin, epoch: Some(c.epoch), via: c.via });
        }
        warnings.push(format!(
            "discarded {:?} point (epoch {}, seq {}): the source's chain hash there differs \
             (the source was replaced, rolled back or forked)",
            c.origin, c.epoch, c.seq
        ));
    }
    Ok(StartPoint::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(epochs: &[(u128, u64)], update_seq: u64) -> DbInfo {
        DbInfo {
            name: "x".into(),
            uuid: Uuid::from_u128(epochs.last().unwrap().0),
            epochs: epochs.iter().map(|&(u, s)| Epoch { uuid: Uuid::from_u128(u), start_seq: s }).collect(),
            update_seq,
            chain: ChainHash([0; 32]),
            record_count: 0,
            backend: "test".into(),
        }
    }

    #[test]
    fn epochs_name_their_ranges() {
        let db = info(&[(1, 1), (2, 11), (3, 11), (4, 21)], 30);
        assert_eq!(epoch_of(&db.epochs, 0), Uuid::from_u128(1));
        assert_eq!(epoch_of(&db.epochs, 10), Uuid::from_u128(1));
        assert_eq!(epoch_of(&db.epochs, 11), Uuid::from_u128(3), "an empty epoch names nothing");
        assert_eq!(epoch_of(&db.epochs, 25), Uuid::from_u128(4));
        assert!(names_state(&db, Uuid::from_u128(1), 10));
        assert!(!names_state(&db, Uuid::from_u128(1), 11));
        assert!(!names_state(&db, Uuid::from_u128(2), 11));
        assert!(names_state(&db, Uuid::from_u128(3), 20));
        assert!(names_state(&db, Uuid::from_u128(4), 30));
        assert!(!names_state(&db, Uuid::from_u128(4), 31), "beyond update_seq");
        assert!(!names_state(&db, Uuid::from_u128(9), 5), "not an epoch of this database");
    }

    #[test]
    fn a_fork_epoch_takes_over_seqs_already_written() {
        // A fork detected at seq 40 re-names seqs 31.. under a new uuid.
        let db = info(&[(1, 1), (2, 31)], 40);
        assert!(names_state(&db, Uuid::from_u128(1), 30));
        assert!(!names_state(&db, Uuid::from_u128(1), 35));
        assert!(names_state(&db, Uuid::from_u128(2), 35));
    }

    #[test]
    fn filtered_passes_keep_their_own_resume_points() {
        let epoch = Uuid::from_u128(7);
        assert_eq!(resume_key(epoch, None), epoch);
        let ab = resume_key(epoch, Some(&["b".into(), "a".into()]));
        assert_ne!(ab, epoch);
        assert_eq!(
            ab,
            resume_key(epoch, Some(&["a".into(), "b".into(), "a".into()])),
            "order and repeats do not matter"
        );
        assert_ne!(ab, resume_key(epoch, Some(&["a".into()])));
        assert_ne!(ab, resume_key(Uuid::from_u128(8), Some(&["a".into(), "b".into()])));
    }
}
