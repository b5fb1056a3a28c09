//! Compaction (SPEC §4.5): the records' trees are read page by page in seq order, and each page's
//! droppable bodies (`compact::droppable`) are decided and dropped in one write transaction, so a
//! writer waits for one page at most and nothing written meanwhile is decided on stale trees.

use std::collections::HashMap;

use async_trait::async_trait;
use outpost_api::{names, CompactReport, CompactRequest, Error, Maintenance, Result, TableReader};

use super::Engine;
use crate::storage::{blocking, FeedFilter, RecordKey, Storage, WriteSet};
use crate::validate;

/// Records read and compacted per write transaction: their whole trees are loaded inside it, so a
/// writer waits for that many records' histories at most.
const PAGE: usize = 100;

/// Where a compaction is, for a progress bar: what it did so far, and the seq it has reached of the
/// seqs it covers (those written before it began).
#[derive(Clone, Copy, Debug)]
pub struct CompactProgress<'a> {
    /// What it did so far.
    pub report: &'a CompactReport,
    /// The latest seq of the records read so far.
    pub seq: u64,
    /// The update_seq when it began: records changed later are left to the next compaction.
    pub upto: u64,
}

impl<S: Storage> Engine<S> {
    /// [`Maintenance::compact`], telling `progress` after every page.
    pub async fn compact_with_progress(
        &self,
        request: CompactRequest,
        progress: &(dyn Fn(CompactProgress<'_>) + Send + Sync),
    ) -> Result<CompactReport> {
        validate::seq(request.since, "since")?;
        let keep = self.keep_by_table(&request).await?;
        // One compaction of a database at a time in this process: a second one (the schedule, a
        // request, a retried request) waits and then finds little left to do.
        let _running = self.compacting.lock().await;
        let upto = self.store()?.head().await?.update_seq;
        if keep.is_empty() {
            return Ok(CompactReport { upto, ..CompactReport::default() });
        }
        let size_before = self.store()?.size_bytes().await?;
        let mut report = CompactReport { upto, size_before, ..CompactReport::default() };
        let filter = FeedFilter { tables: keep.keys().cloned().collect(), records: Vec::new() };
        let mut since = request.since;
        while since < upto {
            let page = self.store()?.changes(since, PAGE, Some(&filter), 1).await?;
            let Some(last) = page.changes.last() else { break };
            since = last.seq;
            let keys: Vec<RecordKey> = page
                .changes
                .into_iter()
                .filter(|c| c.seq <= upto && keep.contains_key(&c.table))
                .map(|c| (c.table, c.id))
                .collect();
            let (records, dropped, bytes) = self.compact_page(keys, &keep).await?;
            report.records += records;
            report.bodies_dropped += dropped;
            report.body_bytes += bytes;
            progress(CompactProgress { report: &report, seq: since.min(upto), upto });
        }
        // Also when nothing was dropped now: an earlier compaction may have been stopped before it.
        self.store()?.reclaim_space().await?;
        report.size_after = self.store()?.size_bytes().await?;
        Ok(report)
    }

    /// The generations to keep, by table, of the tables `request` compacts.
    async fn keep_by_table(&self, request: &CompactRequest) -> Result<HashMap<String, u64>> {
        if request.scheduled && request.keep_bodies.is_some() {
            return Err(Error::invalid(
                "a scheduled compaction keeps each table's own keep_bodies: give no keep_bodies",
            ));
        }
        let tables = match &request.table {
            Some(name) => vec![self.get_table(name).await?],
            None => self.list_tables().await?,
        };
        Ok(tables
            .into_iter()
            .filter_map(|def| {
                let keep = if request.scheduled {
                    def.keep_bodies?
                } else {
                    request.keep_bodies.or(def.keep_bodies).unwrap_or(0)
                };
                Some((def.name, keep))
            })
            .collect())
    }

    /// Compact one page of records in one write transaction: their trees read in it, the bodies
    /// they no longer need dropped. Returns the records read, bodies dropped and their bytes.
    async fn compact_page(&self, keys: Vec<RecordKey>, keep: &HashMap<String, u64>) -> Result<(u64, u64, u64)> {
        if keys.is_empty() {
            return Ok((0, 0, 0));
        }
        let mut txn = self.begin().await?;
        let records = keys.len() as u64;
        let trees = txn.load_trees(keys).await?;
        let keep = keep.clone();
        let (seqs, bytes) = blocking(move || {
            let (mut seqs, mut bytes) = (Vec::new(), 0);
            for ((table, _), tree) in &trees {
                let Some(&generations) = keep.get(table) else { continue };
                for rev in crate::compact::droppable(tree, generations) {
                    let node = tree.get(&rev).expect("droppable names revisions of the tree");
                    // `droppable` names revisions with an event (a stub has no body to drop).
                    let Some(seq) = node.seq else { continue };
                    seqs.push(seq);
                    // The stored text's length (the trees hold bodies as stored).
                    bytes += node.body.as_ref().map_or(0, |json| json.len() as u64);
                }
            }
            (seqs, bytes)
        })
        .await?;
        let dropped = seqs.len() as u64;
        self.commit(txn, WriteSet { drop_bodies: seqs, ..WriteSet::default() }).await?;
        Ok((records, dropped, bytes))
    }
}

#[async_trait]
impl<S: Storage> Maintenance for Engine<S> {
    async fn compact(&self, request: CompactRequest) -> Result<CompactReport> {
        if let Some(table) = &request.table {
            names::validate_table_name(table)?;
        }
        self.compact_with_progress(request, &|_| {}).await
    }
}
