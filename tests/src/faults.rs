//! Replications cut short on purpose. [`FlakyTarget`] wraps a database and makes some of its
//! `put_revisions` calls fail with Unavailable, either from the n-th call on (a pass cut at a chosen
//! point) or at random by a seeded schedule. A random failure may come before the write reaches the
//! database or after it committed (the answer lost on the way back), the two ways a network cut can
//! land. [`cancelled_after`] cancels a pass once it has written a number of batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use outpost_api::{
    ChainHash, Database, DbInfo, Error, InfoReader, KnowledgeRow, KnowledgeUpdate, PutRevisionsResult, RecordRevs,
    ReplicaSource, ReplicaTarget, Result, ResumePoint, RevisionData, RevisionEvent, Uuid,
};

use outpost_reconciler::{CancellationToken, Options, ProgressFn};

use crate::support::Rng;

/// `options` with a fresh cancellation token that the progress callback (called after each batch
/// written) fires once `batches` batches are written.
pub fn cancelled_after(batches: u64, options: Options) -> Options {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let written = AtomicU64::new(0);
    let progress: ProgressFn = Arc::new(move |_| {
        if written.fetch_add(1, Ordering::Relaxed) + 1 >= batches {
            stop.cancel();
        }
    });
    Options { progress: Some(progress), cancel, ..options }
}

/// When `put_revisions` fails.
#[derive(Clone, Debug)]
pub enum PutFaults {
    /// Every call after the first `n` fails before reaching the database.
    After(u64),
    /// Each call fails with a chance of `percent` in 100, half the time after the database
    /// committed the write; at most `budget` failures.
    Random {
        /// Seeds the schedule.
        seed: u64,
        /// Chance of failure per call, in percent.
        percent: u32,
        /// Most failures.
        budget: u32,
    },
}

/// A database as a replication target whose `put_revisions` fails by a [`PutFaults`] schedule.
pub struct FlakyTarget {
    inner: Arc<dyn Database>,
    faults: PutFaults,
    rng: Mutex<Rng>,
    calls: AtomicU64,
    failures: AtomicU64,
    revs_diffs: AtomicU64,
}

impl FlakyTarget {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Database>, faults: PutFaults) -> Self {
        let seed = match faults {
            PutFaults::Random { seed, .. } => seed,
            PutFaults::After(_) => 0,
        };
        FlakyTarget {
            inner,
            faults,
            rng: Mutex::new(Rng::new(seed)),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            revs_diffs: AtomicU64::new(0),
        }
    }

    /// `revs_diff` calls so far.
    pub fn revs_diffs(&self) -> u64 {
        self.revs_diffs.load(Ordering::Relaxed)
    }

    /// `put_revisions` calls that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether this call fails, and if so whether after the write.
    fn draw(&self) -> Option<bool> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        match self.faults {
            PutFaults::After(n) => (call >= n).then_some(false),
            PutFaults::Random { percent, budget, .. } => {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                let fail = self.failures() < u64::from(budget) && rng.chance(percent);
                fail.then(|| rng.chance(50))
            }
        }
    }
}

fn cut() -> Error {
    Error::unavailable("flaky target: the connection was cut")
}

#[async_trait]
impl InfoReader for FlakyTarget {
    async fn info(&self) -> Result<DbInfo> {
        self.inner.info().await
    }
}

#[async_trait]
impl ReplicaSource for FlakyTarget {
    async fn get_revisions(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionData>> {
        self.inner.get_revisions(wanted).await
    }
    async fn chain_hash_at(&self, seq: u64) -> Result<ChainHash> {
        self.inner.chain_hash_at(seq).await
    }
    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        self.inner.knowledge(upto).await
    }
    async fn events(&self, after: u64, limit: usize) -> Result<Vec<RevisionEvent>> {
        self.inner.events(after, limit).await
    }
}

#[async_trait]
impl ReplicaTarget for FlakyTarget {
    async fn revs_diff(&self, have: Vec<RecordRevs>) -> Result<Vec<RecordRevs>> {
        self.revs_diffs.fetch_add(1, Ordering::Relaxed);
        self.inner.revs_diff(have).await
    }
    async fn put_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
    ) -> Result<PutRevisionsResult> {
        match self.draw() {
            None => self.inner.put_revisions(revisions, resume).await,
            Some(after_commit) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if after_commit {
                    self.inner.put_revisions(revisions, resume).await?;
                }
                Err(cut())
            }
        }
    }
    async fn put_revisions_with_knowledge(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: KnowledgeUpdate,
    ) -> Result<PutRevisionsResult> {
        self.inner.put_revisions_with_knowledge(revisions, knowledge).await
    }
    async fn record_knowledge(&self, update: KnowledgeUpdate) -> Result<()> {
        self.inner.record_knowledge(update).await
    }
    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        self.inner.resume_point(source).await
    }
}
