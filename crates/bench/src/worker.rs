//! The measured processes the driver starts: writing records through Outpost (B1, B7, seeding, the
//! updates of B3) and the bare rusqlite insert B1 is compared with. Each prints one JSON line: what it
//! did, how long the measured part took, and the process's peak RSS as the OS reports it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use outpost_api::{Database, ErrorKind, GetOptions, Limits, NewTable, PutRecord, WriteOp};
use serde::{Deserialize, Serialize};

use crate::records;

/// The table every workload writes.
pub const TABLE: &str = "items";

/// What a worker measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measured {
    pub records: u64,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

/// Which rows to write.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    pub seed: u64,
    pub from: u64,
    pub count: u64,
    /// 0 for new records; n > 0 rewrites existing records as their n-th update.
    pub version: u64,
    pub batch: usize,
}

impl Rows {
    pub(crate) fn chunks(&self) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
        let end = self.from + self.count;
        (self.from..end).step_by(self.batch).map(move |start| start..(start + self.batch as u64).min(end))
    }
}

/// Open (or create) the database a locator names: a SQLite file, `postgres://…` (with `name`), or an
/// `http://…/dbs/NAME` on a server.
pub async fn open(locator: &str, name: &str, create: bool) -> outpost_api::Result<Arc<dyn Database>> {
    if locator.starts_with("http://") {
        return Ok(Arc::new(outpost_client::connect(locator)?));
    }
    if locator.starts_with("postgres://") {
        let dbs = outpost_postgres::PostgresDatabases::connect_url(locator, Limits::default()).await?;
        let db = if create { dbs.create_postgres(name).await? } else { dbs.open_postgres(name).await? };
        return Ok(db);
    }
    let path = Path::new(locator);
    Ok(if create {
        Arc::new(outpost_sqlite::create_file(path, name, Limits::default()).await?)
    } else {
        Arc::new(outpost_sqlite::open_file(path, Limits::default()).await?)
    })
}

/// Write `rows` through Outpost's batch API, one `write_batch` per `rows.batch` records; only the
/// `write_batch` calls are timed (making the records, and reading the current revisions of updates,
/// are not).
pub async fn write(db: &dyn Database, rows: Rows) -> outpost_api::Result<Measured> {
    write_or_make(db, rows, false).await
}

/// Make the operations [`write`] would write and drop them unwritten: the part of a worker's cost that
/// is not Outpost's, which an instruction count subtracts (`worker write --dry`).
pub async fn make(db: &dyn Database, rows: Rows) -> outpost_api::Result<Measured> {
    write_or_make(db, rows, true).await
}

async fn write_or_make(db: &dyn Database, rows: Rows, dry: bool) -> outpost_api::Result<Measured> {
    match db.create_table(NewTable { name: TABLE.into(), ..NewTable::default() }).await {
        Err(e) if e.kind != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    // Each batch is made (and, for updates, its current revisions read) untimed, then written timed.
    let mut timed = std::time::Duration::ZERO;
    for chunk in rows.chunks() {
        let mut ops = Vec::with_capacity(chunk.clone().count());
        for index in chunk {
            let id = records::id(index);
            let rev = if rows.version == 0 {
                None
            } else {
                Some(db.get_record(TABLE, &id, GetOptions::default()).await?.rev)
            };
            let attributes = outpost_api::Attributes::from_plain(&records::attributes(rows.seed, index, rows.version))?;
            ops.push(WriteOp::put(TABLE, PutRecord { id: Some(id), rev, attributes, resolves: vec![] }));
        }
        if dry {
            drop(std::hint::black_box(ops));
            continue;
        }
        let started = Instant::now();
        for result in db.write_batch(ops).await? {
            result?;
        }
        timed += started.elapsed();
    }
    Ok(Measured { records: rows.count, seconds: timed.as_secs_f64(), peak_rss_bytes: peak_rss() })
}

/// The reference for B1: the same rows inserted into a plain SQLite table (id, JSON body) with a
/// prepared statement, one transaction per batch, and Outpost's own durability settings (WAL,
/// synchronous=FULL); timed like [`write`], per batch. `dry`: make the rows and insert none (the
/// baseline of an instruction count).
pub fn reference(path: &Path, rows: Rows, dry: bool) -> rusqlite::Result<Measured> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, body TEXT NOT NULL)")?;
    let mut timed = std::time::Duration::ZERO;
    for chunk in rows.chunks() {
        let batch: Vec<(String, serde_json::Value)> =
            chunk.map(|index| (records::id(index), records::attributes(rows.seed, index, rows.version))).collect();
        if dry {
            drop(std::hint::black_box(batch));
            continue;
        }
        let started = Instant::now();
        let tx = conn.transaction()?;
        {
            // Like Outpost, it gets the values and encodes each body as JSON itself.
            let mut insert = tx.prepare_cached("INSERT INTO items (id, body) VALUES (?1, ?2)")?;
            for (id, body) in &batch {
                insert.execute((id, body.to_string()))?;
            }
        }
        tx.commit()?;
        timed += started.elapsed();
    }
    Ok(Measured { records: rows.count, seconds: timed.as_secs_f64(), peak_rss_bytes: peak_rss() })
}

/// This process's peak resident set size (VmHWM), where the OS tells it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    rss_line(&status, "VmHWM:")
}

/// A `VmHWM:`/`VmRSS:` line of /proc/<pid>/status, in bytes.
pub fn rss_line(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.trim_start_matches(key).trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_into_batches_covering_the_range_once() {
        let rows = Rows { seed: 1, from: 10, count: 25, version: 0, batch: 10 };
        let chunks: Vec<_> = rows.chunks().collect();
        assert_eq!(chunks, vec![10..20, 20..30, 30..35]);
    }

    #[test]
    fn status_lines_are_read_in_bytes() {
        let status = "Name:\toutpost\nVmHWM:\t   21504 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(rss_line(status, "VmHWM:"), Some(21504 * 1024));
        assert_eq!(rss_line(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(rss_line(status, "VmSwap:"), None);
    }

    #[tokio::test]
    async fn outpost_and_the_reference_write_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rows = Rows { seed: 3, from: 0, count: 120, version: 0, batch: 50 };
        let db = open(dir.path().join("a.outpost").to_str().unwrap(), "a", true).await.unwrap();
        let measured = write(db.as_ref(), rows).await.unwrap();
        assert_eq!(measured.records, 120);
        let first = db.get_record(TABLE, &records::id(0), GetOptions::default()).await.unwrap();
        assert_eq!(first.attributes, outpost_api::Attributes::from_plain(&records::attributes(3, 0, 0)).unwrap());

        let updated = write(db.as_ref(), Rows { from: 100, count: 20, version: 1, ..rows }).await.unwrap();
        assert_eq!(updated.records, 20);
        let r = db.get_record(TABLE, &records::id(110), GetOptions::default()).await.unwrap();
        assert_eq!(r.attributes, outpost_api::Attributes::from_plain(&records::attributes(3, 110, 1)).unwrap());

        let path = dir.path().join("ref.sqlite");
        reference(&path, rows, false).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 120);
    }
}
