//! Compaction on a schedule (SPEC §4.5): a background task that, every interval, compacts each
//! database's tables that set `keep_bodies`, each to its own. Each round starts where the last one
//! ended for a database (only records changed since can have new bodies to drop), unless a table's
//! `keep_bodies` changed meanwhile. What to drop is the engine's decision; this module only says when.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use outpost_api::{CompactRequest, Databases, Result};
use tokio::sync::watch;

/// What a database's last scheduled compaction covered: the database it was (its uuid: a database
/// deleted and made again, or restored, is another), the tables' `keep_bodies` then, and the
/// update_seq it reached.
struct Covered {
    uuid: outpost_api::Uuid,
    keep: BTreeMap<String, u64>,
    upto: u64,
}

/// Start the scheduled compactor: a round every `every` until `stop` is raised (between databases;
/// a batch in progress is atomic anyway).
pub(crate) fn spawn(
    dbs: Arc<dyn Databases>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut covered: HashMap<String, Covered> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(every) => {}
            }
            let names = match dbs.list().await {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!("scheduled compaction: {e}");
                    continue;
                }
            };
            covered.retain(|name, _| names.contains(name));
            for name in names {
                if *stop.borrow() {
                    return;
                }
                if let Err(e) = compact(&*dbs, &name, &mut covered).await {
                    tracing::warn!(db = %name, "scheduled compaction: {e}");
                }
            }
        }
    })
}

/// Compact one database's tables that set `keep_bodies`, from where its last round ended.
async fn compact(dbs: &dyn Databases, name: &str, covered: &mut HashMap<String, Covered>) -> Result<()> {
    let db = dbs.open(name).await?;
    let keep: BTreeMap<String, u64> =
        db.list_tables().await?.into_iter().filter_map(|t| Some((t.name, t.keep_bodies?))).collect();
    if keep.is_empty() {
        covered.remove(name);
        return Ok(());
    }
    let info = db.info().await?;
    let since = covered
        .get(name)
        .filter(|c| c.uuid == info.uuid && c.keep == keep && c.upto <= info.update_seq)
        .map_or(0, |c| c.upto);
    let report = db.compact(CompactRequest { scheduled: true, since, ..CompactRequest::default() }).await?;
    if report.bodies_dropped > 0 {
        tracing::info!(db = %name, records = report.records, bodies = report.bodies_dropped,
            bytes = report.body_bytes, "compacted");
    }
    covered.insert(name.to_owned(), Covered { uuid: info.uuid, keep, upto: report.upto });
    Ok(())
}
