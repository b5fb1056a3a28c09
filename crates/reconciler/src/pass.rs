//! The replication loop of SPEC §7 and the knowledge rule of §8.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use outpost_api::{
    names, ChainHash, ChangeReader, ChangesPage, ChangesRequest, DbInfo, Error, ErrorKind, KnowledgeRow,
    KnowledgeUpdate, RecordRevs, ReplicaSource, ReplicaTarget, Result, ResumePoint, RevId, RevisionData,
};

use crate::report::Report;
use crate::requests;
use crate::start::{self, epoch_of, resume_key};
use crate::Options;

/// What a replication reads from: the changes feed and the replica-source calls.
pub trait Source: ChangeReader + ReplicaSource {}
impl<T: ChangeReader + ReplicaSource + ?Sized> Source for T {}

/// What a replication writes to: the replica-target calls, plus reading its own knowledge to choose
/// the start point.
pub trait Target: ReplicaTarget + ReplicaSource {}
impl<T: ReplicaTarget + ReplicaSource + ?Sized> Target for T {}

/// Copy every revision `target` lacks from `source` (SPEC §7). One pass unless `options.continuous`;
/// transient failures restart the pass from the target's committed point, with capped exponential
/// backoff. Returns the report; an error that is not transient (or outlasts the retries) is returned
/// as is, with everything committed before it kept.
///
/// Either end may be local or remote (any `Database`): a pass from a server to a local file, with
/// progress and a way to stop it:
///
/// ```
/// use outpost_api::{Database, Result};
/// use outpost_reconciler::{replicate, CancellationToken, Options};
///
/// async fn pull(server: &dyn Database, local: &dyn Database, stop: CancellationToken) -> Result<u64> {
///     let options = Options { cancel: stop, ..Options::default() };
///     let report = replicate(server, local, &options).await?;
///     // A pass interrupted anywhere resumes where it committed: running it again is always safe.
///     Ok(report.progress.revisions_written)
/// }
/// ```
pub async fn replicate<S, T>(source: &S, target: &T, options: &Options) -> Result<Report>
where
    S: Source + ?Sized,
    T: Target + ?Sized,
{
    if options.batch_size == 0 {
        return Err(Error::invalid("batch size must be at least 1"));
    }
    let started = Instant::now();
    let mut run = Run { source, target, options, report: Report::new(), first: true };
    let mut failures = 0u32;
    // In continuous mode, the drained position to continue from without choosing a start again.
    let mut position: Option<u64> = None;
    loop {
        if options.cancel.is_cancelled() {
            run.report.cancelled = true;
            break;
        }
        let outcome = match position {
            Some(seq) => run.follow(seq).await,
            None => run.pass(None).await,
        };
        match outcome {
            Ok(seq) if options.continuous => {
                failures = 0;
                position = Some(seq);
            }
            Ok(_) => break,
            Err(e) if transient(&e) && (options.continuous || failures + 1 < options.retry.max_attempts) => {
                failures += 1;
                run.report.restarts += 1;
                position = None;
                let delay = options.retry.delay(failures, None);
                tracing::warn!(error = %e, attempt = failures, ?delay, "replication interrupted; resuming");
                run.warn(format!("interrupted ({e}); resumed from the committed point"));
                tokio::select! {
                    () = options.cancel.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    run.report.cancelled = options.cancel.is_cancelled();
    run.report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    run.progress();
    Ok(run.report)
}

/// Both directions: `a → b`, then `b → a` (concurrently when continuous). Returns the two reports in
/// that order.
pub async fn sync<A, B>(a: &A, b: &B, options: &Options) -> Result<(Report, Report)>
where
    A: Source + Target + ?Sized,
    B: Source + Target + ?Sized,
{
    if options.continuous {
        tokio::try_join!(replicate(a, b, options), replicate(b, a, options))
    } else {
        let ab = replicate(a, b, options).await?;
        let ba = replicate(b, a, options).await?;
        Ok((ab, ba))
    }
}

/// Failures worth a retry: the peer is away or failed on its side.
fn transient(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal)
}

struct Run<'a, S: ?Sized, T: ?Sized> {
    source: &'a S,
    target: &'a T,
    options: &'a Options,
    report: Report,
    first: bool,
}

/// One page read from the source, with exactly the revisions the target lacks.
struct Fetched {
    last_seq: u64,
    last_chain: Option<outpost_api::ChainHash>,
    changes: u64,
    revisions: Vec<RevisionData>,
    bytes: u64,
    requests: u64,
}

impl<S: Source + ?Sized, T: Target + ?Sized> Run<'_, S, T> {
    fn warn(&mut self, warning: String) {
        self.report.warnings.push(warning);
    }

    fn progress(&self) {
        if let Some(progress) = &self.options.progress {
            progress(&self.report.progress);
        }
    }

    fn tables(&self) -> Option<&[String]> {
        self.options.tables.as_deref()
    }

    /// One pass: choose the start point (unless continuing from `from`), page until drained, then
    /// record knowledge. Returns the drained source seq.
    async fn pass(&mut self, from: Option<u64>) -> Result<u64> {
        self.report.requests += 2;
        let (source, target) = tokio::try_join!(self.source.info(), self.target.info())?;
        if self.first {
            self.report.source = source.uuid;
            self.report.target = target.uuid;
        }
        self.report.progress.source_update_seq = source.update_seq;
        let since = match from {
            Some(seq) => seq,
            None => {
                let mut warnings = Vec::new();
                let tables = self.options.tables.as_deref();
                let requests = &mut self.report.requests;
                let start = start::choose(self.source, self.target, &source, tables, requests, &mut warnings).await?;
                for w in warnings {
                    self.warn(w);
                }
                if self.first {
                    self.report.start = start;
                }
                start.seq
            }
        };
        self.first = false;
        self.report.progress.source_seq = since;
        // A target that held nothing when the pass began (a new peer's first pass) lacks every
        // revision the feed names but those this pass, or a writer meanwhile, gives it, which
        // storing again leaves as they are: its pages need no revs-diff.
        let lacks_all = target.update_seq == 0;
        self.definitions_first(since, lacks_all).await?;
        let last = self.copy_from(&source, since, lacks_all).await?;
        if self.options.cancel.is_cancelled() {
            return Ok(last);
        }
        self.report.end_seq = last;
        self.report.drained = true;
        if self.tables().is_none() {
            self.record_knowledge(&source, &target, last).await?;
        }
        Ok(last)
    }

    /// Table definitions first: the `_tables` records changed after `since` (those of the pass's
    /// tables, when filtered) are copied before any record, so that when a table's records arrive
    /// the target holds the definition the source has — whether the table takes foreign revisions
    /// (`couch`, SPEC §3) above all — even where the feed lists the definition after them (a table
    /// updated after its records were written). No resume point: the pass meets them again in their
    /// place in the feed, where copying them is a no-op.
    async fn definitions_first(&mut self, since: u64, lacks_all: bool) -> Result<()> {
        let mut at = since;
        loop {
            let tables = Some(vec![names::TABLES_TABLE.to_owned()]);
            let request = ChangesRequest { since: at, limit: self.options.batch_size, tables };
            self.report.requests += 1;
            let mut page = self.source.changes(request).await?;
            let (pending, last) = (page.pending, page.last_seq);
            if let Some(only) = self.tables() {
                page.changes.retain(|c| only.contains(&c.id));
            }
            if !page.changes.is_empty() {
                let fetched = fetch(self.source, self.target, self.options, page, lacks_all).await?;
                self.report.requests += fetched.requests;
                self.report.progress.revisions_fetched += fetched.revisions.len() as u64;
                self.report.progress.bytes += fetched.bytes;
                let total = fetched.revisions.len() as u64;
                for part in requests::revision_parts(fetched.revisions, total, self.options) {
                    self.report.requests += 1;
                    self.report.progress.revisions_written += self.target.put_revisions(part, None).await?.written;
                }
            }
            if pending == 0 || self.options.cancel.is_cancelled() {
                return Ok(());
            }
            if last <= at {
                return Err(Error::corrupt(format!(
                    "the source's changes feed of table definitions says more follow seq {at} but its page ends there"
                )));
            }
            at = last;
        }
    }

    /// Continuous mode: wait for the source to move past `seq`, then copy what is new.
    async fn follow(&mut self, seq: u64) -> Result<u64> {
        self.report.requests += 1;
        let moved = tokio::select! {
            () = self.options.cancel.cancelled() => return Ok(seq),
            moved = self.source.wait_for_changes(seq, self.options.poll_timeout) => moved?,
        };
        if moved <= seq {
            return Ok(seq);
        }
        self.pass(Some(seq)).await
    }

    /// Page the source's feed from `since` until drained (or cancelled), writing each page with its
    /// resume point. Reading runs ahead of writing: [`read_ahead`] asks for the next page of the
    /// feed while it fetches the revisions of this one, and queues fetched pages (at most [`AHEAD`],
    /// so memory stays bounded) for the writer here, which commits them in order. Whatever was
    /// committed before a failure on either side is kept. Returns the last committed source seq.
    async fn copy_from(&mut self, source: &DbInfo, since: u64, lacks_all: bool) -> Result<u64> {
        let (from, to, options) = (self.source, self.target, self.options);
        let (queue, mut pages) = tokio::sync::mpsc::channel::<Fetched>(AHEAD);
        let reading = read_ahead(from, to, options, (since, lacks_all), queue);
        let writing = async {
            let mut committed = since;
            while let Some(fetched) = pages.recv().await {
                self.account(&fetched);
                committed = self.write(source, committed, fetched).await?;
                if options.cancel.is_cancelled() {
                    break;
                }
            }
            // Closing the queue stops the reader at its next page.
            drop(pages);
            Ok::<_, Error>(committed)
        };
        let (read, written) = tokio::join!(reading, writing);
        let committed = written?;
        read?;
        Ok(committed)
    }

    fn account(&mut self, fetched: &Fetched) {
        self.report.pages += 1;
        self.report.requests += fetched.requests;
        self.report.progress.changes_read += fetched.changes;
        self.report.progress.revisions_fetched += fetched.revisions.len() as u64;
        self.report.progress.bytes += fetched.bytes;
    }

    async fn write(&mut self, source: &DbInfo, committed: u64, fetched: Fetched) -> Result<u64> {
        let written = write(self.source, self.target, self.options, source, committed, fetched).await?;
        Ok(self.written(written))
    }

    fn written(&mut self, written: Written) -> u64 {
        self.report.requests += written.requests;
        self.report.progress.revisions_written += written.revisions;
        self.report.progress.source_seq = written.seq;
        self.report.end_seq = written.seq;
        self.progress();
        written.seq
    }

    /// Whether the target holds the source's history at `last` as its own (chain `chain` there).
    async fn same_history(&mut self, target: &DbInfo, last: u64, chain: ChainHash) -> Result<bool> {
        if last > target.update_seq {
            return Ok(false);
        }
        self.report.requests += 1;
        Ok(self.target.chain_hash_at(last).await? == chain)
    }

    /// The last seq at which the source, a copy of the target under the target's current uuid, has the
    /// target's chain hash — as a knowledge row about that uuid, which the target checks against its
    /// own chain like any other (a lying source gains nothing) — found by bisecting with
    /// `chain_hash_at` on both sides: agreeing at a seq, they agree at every seq before it.
    async fn shared_history(&mut self, target: &DbInfo, last: u64) -> Result<Option<KnowledgeRow>> {
        let start = target.epochs.last().map_or(1, |e| e.start_seq.max(1));
        let (mut agreed, mut disagreed) = (start - 1, last.min(target.update_seq) + 1);
        let mut agreed_chain = None;
        while agreed + 1 < disagreed {
            let mid = agreed + (disagreed - agreed) / 2;
            self.report.requests += 2;
            let theirs = self.source.chain_hash_at(mid).await?;
            if self.target.chain_hash_at(mid).await? == theirs {
                (agreed, agreed_chain) = (mid, Some(theirs));
            } else {
                disagreed = mid;
            }
        }
        Ok(agreed_chain.map(|chain| KnowledgeRow {
            peer: target.uuid,
            peer_seq: agreed,
            peer_chain: chain,
            local_seq: agreed,
            via: None,
        }))
    }

    /// SPEC §8: at a drained point, the target learns the source's position and imports the source's
    /// knowledge held at or before it. A fork of the target's own history shows as a new epoch.
    async fn record_knowledge(&mut self, source: &DbInfo, target: &DbInfo, last: u64) -> Result<()> {
        let chain = self.chain_at(last).await?;
        self.report.requests += 1;
        let mut imported = self.source.knowledge(Some(last)).await?;
        let epoch = epoch_of(&source.epochs, last);
        if epoch == target.uuid && !self.same_history(target, last, chain).await? {
            // The source is another copy of the target under the same uuid, and their histories
            // part: where, found here, is where the fork's new epoch begins (else at the epoch's
            // start, taking from every peer the seqs the copies share).
            if let Some(shared) = self.shared_history(target, last).await? {
                imported.push(shared);
            }
        }
        // Only knowledge about the target's current uuid can reveal a fork (SPEC §6).
        let may_fork = epoch == target.uuid || imported.iter().any(|r| r.peer == target.uuid);
        self.report.requests += 1;
        self.target
            .record_knowledge(KnowledgeUpdate { source: epoch, source_seq: last, source_chain: chain, imported })
            .await?;
        self.report.knowledge_recorded = true;
        if may_fork {
            self.report.requests += 1;
            let after = self.target.info().await?;
            if after.uuid != target.uuid {
                self.warn(format!(
                    "the target's history forked: another copy wrote under its uuid {}; it now continues as {} \
                     (a new epoch)",
                    target.uuid, after.uuid
                ));
            }
        }
        Ok(())
    }

    async fn chain_at(&mut self, seq: u64) -> Result<outpost_api::ChainHash> {
        self.report.requests += 1;
        self.source.chain_hash_at(seq).await
    }
}

/// Fetched pages a pass holds ready for its writer, besides the one being written and the one
/// being read: enough to keep the writer busy while the source answers.
const AHEAD: usize = 2;

/// The reading half of a pass: the feed's pages from `since`, each with the revisions the target
/// lacks, sent in order to `queue` until the feed is drained, the pass is cancelled or the writer
/// stops. The next page of the feed is asked for while this one's revisions are fetched.
async fn read_ahead<S, T>(
    source: &S,
    target: &T,
    options: &Options,
    (since, lacks_all): (u64, bool),
    queue: tokio::sync::mpsc::Sender<Fetched>,
) -> Result<()>
where
    S: Source + ?Sized,
    T: Target + ?Sized,
{
    let mut page = feed_page(source, options, since).await?;
    loop {
        if page.pending == 0 || options.cancel.is_cancelled() {
            let fetched = fetch(source, target, options, page, lacks_all).await?;
            // A writer that stopped has its reason; nothing more to send.
            let _ = queue.send(fetched).await;
            return Ok(());
        }
        let next_since = page.last_seq;
        let (fetched, next) =
            tokio::join!(fetch(source, target, options, page, lacks_all), feed_page(source, options, next_since));
        if queue.send(fetched?).await.is_err() {
            return Ok(());
        }
        page = next?;
    }
}

/// The page of the feed after `since`.
async fn feed_page<S: Source + ?Sized>(source: &S, options: &Options, since: u64) -> Result<ChangesPage> {
    source.changes(ChangesRequest { since, limit: options.batch_size, tables: options.tables.clone() }).await
}

/// The revisions the target lacks of a page of the feed (every leaf it names, when the target
/// `lacks_all`: it held nothing when the pass began).
async fn fetch<S, T>(source: &S, target: &T, options: &Options, page: ChangesPage, lacks_all: bool) -> Result<Fetched>
where
    S: Source + ?Sized,
    T: Target + ?Sized,
{
    let mut requests = 1;
    let changes = page.changes.len() as u64;
    let have: Vec<RecordRevs> = page.changes.into_iter().map(RecordRevs::from).collect();
    let missing = if lacks_all { have } else { requests::revs_diff(target, have, options, &mut requests).await? };
    let (mut revisions, mut bytes) = requests::get_revisions(source, missing, options, &mut requests).await?;
    // A leaf the source compacted since the page was read comes without its body: it has a child there
    // now, which a later page of the feed brings (with it as ancestry).
    revisions.retain(|r| r.attributes.is_some() || r.deleted);
    let older = lacking_ancestors(source, target, options, &revisions, &mut requests, &mut bytes).await?;
    if !older.is_empty() {
        revisions.extend(older);
        // Parents before children, so that however the writes are chunked (or cut short) no
        // revision is stored before its ancestors and none of them is left a stub.
        revisions.sort_by_key(|r| r.rev.generation);
    }
    Ok(Fetched { last_seq: page.last_seq, last_chain: page.last_chain, changes, revisions, bytes, requests })
}

/// SPEC §7 copies every revision the target lacks, not only the leaves the feed names: the
/// ancestors of `revisions` that the target does not hold are fetched with their bodies. Were they
/// left bodiless stubs, a replica that got a record's history only as the ancestry of a newer leaf
/// would lack the body of a revision other replicas hold — and under `merge-fields` (§4.4) the
/// merge base of two branches is such an inner revision, so the replicas would reconcile the same
/// tree differently. Ancestors the source itself holds only as stubs stay stubs.
async fn lacking_ancestors<S, T>(
    source: &S,
    target: &T,
    options: &Options,
    revisions: &[RevisionData],
    requests: &mut u64,
    bytes: &mut u64,
) -> Result<Vec<RevisionData>>
where
    S: Source + ?Sized,
    T: Target + ?Sized,
{
    let mut lines: BTreeMap<(&str, &str), BTreeSet<RevId>> = BTreeMap::new();
    for r in revisions.iter().filter(|r| !r.ancestry.is_empty()) {
        lines.entry((&r.table, &r.id)).or_default().extend(r.ancestry.iter().copied());
    }
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let ancestors: Vec<RecordRevs> = lines
        .into_iter()
        .map(|((table, id), revs)| RecordRevs { table: table.into(), id: id.into(), revs: revs.into_iter().collect() })
        .collect();
    let absent = requests::revs_diff(target, ancestors, options, requests).await?;
    let (mut older, size) = requests::get_revisions(source, absent, options, requests).await?;
    *bytes += size;
    older.retain(|r| r.attributes.is_some() || r.deleted);
    Ok(older)
}

struct Written {
    seq: u64,
    revisions: u64,
    requests: u64,
}

/// Store a fetched page in the target, the resume point with its last part, in chunks of at most a
/// batch and about the request byte budget (`requests::revision_parts`). Nothing is written when the page neither brings revisions nor moves the position.
async fn write<S, T>(
    source: &S,
    target: &T,
    options: &Options,
    info: &DbInfo,
    committed: u64,
    fetched: Fetched,
) -> Result<Written>
where
    S: Source + ?Sized,
    T: Target + ?Sized,
{
    let mut out = Written { seq: committed, revisions: 0, requests: 0 };
    if fetched.revisions.is_empty() && fetched.last_seq <= committed {
        return Ok(out);
    }
    let chain = match fetched.last_chain {
        Some(chain) => chain,
        None => {
            out.requests += 1;
            source.chain_hash_at(fetched.last_seq).await?
        }
    };
    let resume = ResumePoint {
        source: resume_key(epoch_of(&info.epochs, fetched.last_seq), options.tables.as_deref()),
        source_seq: fetched.last_seq,
        source_chain: chain,
    };
    // A page that brings nothing new still moves the resume point: one empty write.
    let mut chunks = requests::revision_parts(fetched.revisions, fetched.bytes, options);
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.requests += 1;
        let result = target.put_revisions(chunk, (i == last).then_some(resume)).await?;
        out.revisions += result.written;
    }
    out.seq = fetched.last_seq.max(committed);
    Ok(out)
}
