//! The integrity check (`outpost db check`): every event, chain hash, body hash and stored state
//! recomputed from what is stored.

use outpost_api::{ReconcilePolicy, Result, RevId};

use super::{parse_body, Engine};
use crate::hash::genesis_chain;
use crate::reconcile::reconcile;
use crate::storage::{RecordKey, Storage};

impl<S: Storage> Engine<S> {
    /// Verify every revision event: seqs gap-free from 1, each body hashing to its rev id (where the
    /// body and parent are stored), the chain folding to the head's hash; every stored state equal to
    /// the one its tree gives, and the stored live-record count equal to the live records. Meant for a
    /// database nobody writes meanwhile: a write during the check shows as a problem.
    pub async fn check(&self) -> Result<CheckReport> {
        let head = self.store()?.head().await?;
        let mut report = CheckReport { update_seq: head.update_seq, ..CheckReport::default() };
        let mut chain = genesis_chain(head.epochs[0].uuid);
        let mut expect = 1;
        // Events stored without their body, by record: compacted (perhaps pending), or superseded —
        // told apart below by the record's tree, whose node for the revision names its current event.
        let mut bodiless: std::collections::BTreeMap<RecordKey, Vec<(RevId, u64)>> = std::collections::BTreeMap::new();
        loop {
            let events = self.store()?.events(expect - 1, 1000).await?;
            if events.is_empty() {
                break;
            }
            for e in events {
                let r = &e.revision;
                if e.seq != expect {
                    report.problems.push(format!("seq {expect} is missing (next event is {})", e.seq));
                }
                expect = e.seq + 1;
                chain = chain.next_event(e.seq, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref());
                if chain != e.chain {
                    report.problems.push(format!("chain hash at seq {} does not match its events", e.seq));
                    chain = e.chain;
                }
                report.events += 1;
                if r.body.is_none() && !r.deleted {
                    bodiless.entry((r.table.clone(), r.id.clone())).or_default().push((r.rev, e.seq));
                }
                if let Some(body) = &r.body {
                    match parse_body(body) {
                        // A foreign revision's body is checked against its digest, a native one
                        // against its id (SPEC §3).
                        Ok(body) if r.parent.is_some() || r.rev.generation == 1 => {
                            let parent = r.parent.as_ref();
                            let matches = match r.foreign {
                                Some(digest) => {
                                    report.foreign += 1;
                                    crate::foreign::digest(&r.table, &r.id, parent, r.deleted, &body) == digest
                                }
                                None => crate::hash::revision_id(&r.table, &r.id, parent, r.deleted, &body) == r.rev,
                            };
                            report.rehashed += 1;
                            if !matches {
                                report.problems.push(format!(
                                    "revision {} of {}/{} (seq {}) does not match its body",
                                    r.rev, r.table, r.id, e.seq
                                ));
                            }
                        }
                        Ok(_) => {}
                        Err(err) => report.problems.push(format!("seq {}: {}", e.seq, err.message)),
                    }
                }
            }
        }
        self.check_states(&mut report).await?;
        let bodiless: Vec<(RecordKey, Vec<(RevId, u64)>)> = bodiless.into_iter().collect();
        for page in bodiless.chunks(1000) {
            let keys: Vec<RecordKey> = page.iter().map(|(key, _)| key.clone()).collect();
            let trees = self.store()?.load_trees(&keys).await?;
            for (key, events) in page {
                let Some(tree) = trees.get(key) else { continue };
                for (rev, seq) in events {
                    // An event that is no longer its revision's is one whose body a later one replaced.
                    if tree.get(rev).and_then(|n| n.seq) == Some(*seq) {
                        report.compacted += 1;
                    } else {
                        report.superseded += 1;
                    }
                }
                report.pending += tree.iter().filter(|(rev, _)| tree.is_pending(rev)).count() as u64;
            }
        }
        if report.pending > 0 {
            report.problems.push(format!(
                "{} revisions are held without their bodies and without the revisions after them (replayed from \
                 quicksync files that end before those): pull the files again once their publisher has published on",
                report.pending
            ));
        }
        // A count never made yet (a database from before format 2, not opened since) is made on
        // the next `info`; there is nothing to compare.
        if let Some(stored) = self.store()?.record_count().await? {
            if stored != report.live_records {
                report.problems.push(format!(
                    "the stored live-record count is {stored}, but the records hold {} live ones",
                    report.live_records
                ));
            }
        }
        if expect - 1 != head.update_seq {
            report.problems.push(format!("events end at seq {} but update_seq is {}", expect - 1, head.update_seq));
        }
        if chain != head.chain {
            report.problems.push("the head's chain hash does not match the events".into());
        }
        Ok(report)
    }

    /// Part of `check`: every stored state must equal the one its revision tree gives now.
    async fn check_states(&self, report: &mut CheckReport) -> Result<()> {
        let mut since = 0;
        loop {
            let read = self.store()?.changes(since, 1000, None, 1).await?;
            let Some(last) = read.changes.last() else { return Ok(()) };
            since = last.seq;
            let keys: Vec<RecordKey> = read.changes.iter().map(|c| (c.table.clone(), c.id.clone())).collect();
            let trees = self.store()?.load_trees(&keys).await?;
            for key in keys {
                let Some(stored) = self.store()?.load_state(&key.0, &key.1).await? else { continue };
                report.records += 1;
                let expected =
                    trees.get(&key).filter(|t| !t.is_empty()).map(|t| reconcile(t, ReconcilePolicy::KeepConflicts));
                let matches = match expected {
                    Some(Ok(r)) => {
                        report.live_records += u64::from(!r.deleted && crate::plan::counts_table(&key.0));
                        r.winner == stored.rev
                            && r.deleted == stored.deleted
                            && r.leaves == stored.leaves
                            && r.conflicts == stored.conflicts
                            && parse_body(&stored.body).is_ok_and(|b| b == *r.body)
                    }
                    _ => false,
                };
                if !matches {
                    report
                        .problems
                        .push(format!("record {}/{}: the stored state does not match its revision tree", key.0, key.1));
                }
            }
        }
    }
}

/// What `check` found.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CheckReport {
    /// The database's update_seq.
    pub update_seq: u64,
    /// Revision events read.
    pub events: u64,
    /// Revisions whose body was re-hashed.
    pub rehashed: u64,
    /// Of those, foreign revisions (SPEC §3), whose bodies were checked against their digests.
    pub foreign: u64,
    /// Revision events stored without their body because it was compacted (SPEC §4.5): nothing to
    /// re-hash.
    pub compacted: u64,
    /// Revision events kept in the history without their body because a later event of the same
    /// revision replaced it (a foreign body replaced by a native one, or by a smaller digest: SPEC §3).
    pub superseded: u64,
    /// Of those, revisions still pending (`RevisionTree::leaves`): replayed before the revision after
    /// them, which has not arrived. A problem when any.
    pub pending: u64,
    /// Records whose reconciled state was recomputed and compared.
    pub records: u64,
    /// Of those, the live ones in user tables, as their trees give them: what the stored live-record
    /// count must be.
    pub live_records: u64,
    /// Every problem found; empty for a sound database.
    pub problems: Vec<String>,
}
