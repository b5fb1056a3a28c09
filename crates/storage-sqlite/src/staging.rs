//! Databases made aside and moved into place: the claim on a staging name beside a database's path
//! (a lock file, so two processes never touch each other's half-made files), the move that never
//! replaces a file, and [`Bootstrap`], a new file loaded in bulk under a staging name with its
//! commits unsynced and journaled in memory, the revision trees read only of records it may hold
//! already ([`Written`]), and its changes-feed index built at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_api::{Error, Limits, Result};
use outpost_engine::storage::{blocking, Genesis, Storage};

use crate::config::{open_connection_with, Durability};
use crate::error::SqlResultExt;
use crate::lifecycle::{open_file, remove_with_wal};
use crate::{schema, SqliteDatabase, SqliteStorage};

/// The records a staging file that began empty may hold: a Bloom filter of the keys its writes
/// named (every revision row goes through `write::apply`, which adds its key). A key it has not
/// seen has no revision in the file, so a bootstrap reads the trees only of the others — most
/// records of a snapshot arrive once, and a tree read finds nothing for them. A key it says it may
/// hold is read as always; a wrong "may" (about one in five hundred at a million records, more as
/// the file grows past that) costs one read, never a revision. Fixed size, so memory stays flat.
pub(crate) struct Written {
    bits: Vec<u64>,
    hasher: ahash::RandomState,
}

impl Written {
    /// 2^24 bits (2 MiB), four of them a key.
    const BITS: u64 = 1 << 24;
    const PROBES: u64 = 4;

    pub(crate) fn new() -> Written {
        Written { bits: vec![0; (Self::BITS / 64) as usize], hasher: ahash::RandomState::new() }
    }

    /// The bits of `table/id`: double hashing from one keyed 64-bit hash (keyed per process, so no
    /// peer can aim keys at one spot).
    fn spots(&self, table: &str, id: &str) -> impl Iterator<Item = usize> {
        let h = self.hasher.hash_one((table, id));
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..Self::PROBES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % Self::BITS) as usize)
    }

    pub(crate) fn insert(&mut self, table: &str, id: &str) {
        let spots: [usize; Self::PROBES as usize] = {
            let mut at = self.spots(table, id);
            std::array::from_fn(|_| at.next().expect("a spot per probe"))
        };
        for bit in spots {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// Whether the file may hold revisions of `table/id` (false: it holds none).
    pub(crate) fn may_hold(&self, table: &str, id: &str) -> bool {
        self.spots(table, id).all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// A staging name beside a database's path, owned by this process while the claim lives: a lock on
/// `<staging>.lock`, so that two processes making the same database (create, restore, bootstrap)
/// never remove or move each other's half-made files. Taken, it has removed what a crash left at the
/// staging name, and found no database at the path.
pub(crate) struct Claim {
    pub(crate) staging: PathBuf,
    lock: (PathBuf, std::fs::File),
}

impl Claim {
    pub(crate) fn take(path: &Path, suffix: &str) -> Result<Claim> {
        let staging = beside(path, suffix);
        let lock = lock(&beside(path, &format!("{suffix}.lock")), path)?;
        let claim = Claim { staging, lock };
        // Looked at under the lock: one that finished before it was taken made the database.
        if path.exists() {
            claim.done();
            return Err(Error::already_exists(format!("{} exists", path.display())));
        }
        remove_with_wal(&claim.staging);
        Ok(claim)
    }

    /// The database is in place: a later claim stops at that, lock file or none. (A claim that
    /// failed keeps its lock file, so that two waiting on it never build at once.)
    pub(crate) fn done(self) {
        let _ = std::fs::remove_file(&self.lock.0);
    }
}

/// A crash between linking a finished staging file into place and removing its staging name leaves
/// a second name on the live database (which, opened by that name, would have a WAL of its own):
/// such names are removed when the database is opened.
pub(crate) fn remove_stale_names(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(live) = path.metadata() else { return };
        for suffix in [".creating", ".restoring", ".bootstrapping"] {
            let other = beside(path, suffix);
            if other.metadata().is_ok_and(|m| m.dev() == live.dev() && m.ino() == live.ino()) {
                let _ = std::fs::remove_file(&other);
            }
        }
    }
}

/// `path` with `suffix` added to its file name.
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// A new database file loaded in bulk (a quicksync pull into a file that does not exist yet), built
/// in a private staging file beside its path (`<file>.bootstrapping`) and moved into place only
/// when [`Bootstrap::finish`]ed. Everything is written through the engine as into any database, so
/// the result is the database the same writes make anywhere (same seqs, chains, trees, states,
/// counts, knowledge); what differs is only how the file is kept meanwhile: its commits are not
/// synced and its rollback journal is in memory, with no WAL (nobody can see the file, and a crash
/// only loses work that is done again: `config::Durability::Staging`), the trees of a write are
/// read only for records it may hold already ([`Written`]), and the changes feed's index is built
/// once at the end instead of row by row. `finish` builds it, switches the file to WAL, syncs it,
/// moves it into place and syncs the directory. Dropped unfinished (an error, an interrupted
/// pull), the staging file is removed; after a crash, the next bootstrap of the path removes the
/// leftover first: it restarts cleanly. Until `finish`, no database exists at the path. One
/// bootstrap of a path runs at a time (a lock on `<file>.bootstrapping.lock`, held until it ends): a
/// second fails clearly instead of removing the first one's file.
pub struct Bootstrap {
    path: PathBuf,
    staging: PathBuf,
    limits: Limits,
    /// Taken (and so closed, unless a [`Bootstrap::database`] clone still holds it) before the
    /// staging file is removed.
    db: Option<Arc<SqliteDatabase>>,
    finished: bool,
    /// Released last: the staging name is this bootstrap's until its files are gone.
    claim: Option<Claim>,
}

impl Bootstrap {
    /// Begin a database called `name` at `path` (AlreadyExists if a file is there).
    pub async fn begin(path: &Path, name: &str, limits: Limits) -> Result<Bootstrap> {
        Self::begin_with(path, Genesis::new(name)?, limits).await
    }

    /// [`Bootstrap::begin`] with an identity made beforehand (tests compare a bootstrap with the
    /// same writes into a database of the same identity).
    pub async fn begin_with(path: &Path, genesis: Genesis, limits: Limits) -> Result<Bootstrap> {
        if path.exists() {
            return Err(Error::already_exists(format!("{} exists", path.display())));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            return Err(Error::not_found(format!("directory {} does not exist", dir.display())));
        }
        // What a crashed bootstrap left is thrown away: it restarts from nothing.
        let claim = Claim::take(path, ".bootstrapping")?;
        let staging = claim.staging.clone();
        let at = staging.clone();
        let storage = blocking(move || {
            SqliteStorage::build(&at, &genesis, Durability::Staging)?;
            SqliteStorage::open_with(&at, Durability::Staging)
        })
        .await?;
        let storage = match storage {
            Ok(storage) => storage,
            Err(e) => {
                remove_with_wal(&staging);
                return Err(e);
            }
        };
        let db = match outpost_engine::Engine::new(storage, limits).await {
            Ok(db) => Arc::new(db),
            Err(e) => {
                remove_with_wal(&staging);
                return Err(e);
            }
        };
        Ok(Bootstrap { path: path.to_owned(), staging, limits, db: Some(db), finished: false, claim: Some(claim) })
    }

    /// The database being built (write to it as to any database). Drop every clone before the
    /// bootstrap: an unfinished one removes its files when dropped.
    pub fn database(&self) -> Arc<SqliteDatabase> {
        self.db.clone().expect("the database of a bootstrap in progress")
    }

    /// The staging file.
    pub fn staging_path(&self) -> &Path {
        &self.staging
    }

    /// Build the deferred indexes, make the file durable, move it into place, and open it there.
    pub async fn finish(mut self) -> Result<SqliteDatabase> {
        // Closed first: no connection, reader or background checkpoint may use the file after this.
        if let Some(db) = self.db.take() {
            db.storage().close().await;
        }
        let (staging, path) = (self.staging.clone(), self.path.clone());
        if let Err(e) = blocking(move || seal(&staging, &path)).await? {
            // Another made the database meanwhile: the path is taken for good, so is the lock's use.
            if let Some(claim) = self.claim.take().filter(|_| e.kind == outpost_api::ErrorKind::AlreadyExists) {
                claim.done();
            }
            return Err(e);
        }
        self.finished = true;
        if let Some(claim) = self.claim.take() {
            claim.done();
        }
        open_file(&self.path, self.limits).await
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        // Its connections closed first (SQLite removes a WAL by name when the last one closes), then
        // its files; the claim, released after, lets the next bootstrap have the name.
        drop(self.db.take());
        if !self.finished {
            remove_with_wal(&self.staging);
        }
    }
}

/// The lock on `at` (created, owner-only, if missing), or Unavailable when another process holds it
/// (making the database at `path`).
fn lock(at: &Path, path: &Path) -> Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(at).map_err(|e| Error::unavailable(format!("cannot open {}: {e}", at.display())))?;
    match file.try_lock() {
        Ok(()) => Ok((at.to_owned(), file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::unavailable(format!(
            "another process is making the database {} (it holds {})",
            path.display(),
            at.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::unavailable(format!("cannot lock {}: {e}", at.display()))),
    }
}

/// Finish a bootstrap's staging file: its deferred indexes built in one transaction (journaled in
/// memory like every write before: each page written once, into the file), the file switched to WAL
/// as every live file is, synced, then moved to `path` (never over a file that appeared there
/// meanwhile) and the directory synced.
fn seal(staging: &Path, path: &Path) -> Result<()> {
    let conn = open_connection_with(staging, false, Durability::Staging)?;
    let ddl: String = schema::DEFERRED_INDEXES.iter().map(|(_, sql)| format!("{sql};")).collect();
    conn.execute_batch(&format!("BEGIN; {ddl} COMMIT;")).sql()?;
    // Recorded in the file's header: every later connection opens it in WAL mode.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).sql()?;
    conn.close().map_err(|(_, e)| crate::error::map(e))?;
    // Everything must be in the file itself before it is moved: a WAL left beside the staging name
    // (another process holding the file open and writing) would not follow it.
    let wal = beside(staging, "-wal");
    if !mode.eq_ignore_ascii_case("wal") || wal.metadata().is_ok_and(|m| m.len() > 0) {
        return Err(Error::unavailable(format!(
            "{} is held open by another process: it could not be made a WAL file with everything in it \
             (journal mode {mode})",
            staging.display()
        )));
    }
    // Every page the unsynced commits wrote reaches the disk before the file has its name.
    sync(staging)?;
    move_into_place(staging, path)
}

/// fsync the file or directory at `p`.
fn sync(p: &Path) -> Result<()> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::unavailable(format!("cannot sync {}: {e}", p.display())))
}

/// Give the finished file at `staging` its name `path` — never over a file that appeared there
/// meanwhile — and sync the directory so the name lasts.
pub(crate) fn move_into_place(staging: &Path, path: &Path) -> Result<()> {
    match std::fs::hard_link(staging, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(staging);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::already_exists(format!("{} appeared while it was being made", path.display())))
        }
        // A file system without hard links: a rename, after looking once more.
        Err(_) if !path.exists() => std::fs::rename(staging, path)
            .map_err(|e| Error::unavailable(format!("cannot move the new database to {}: {e}", path.display())))?,
        Err(_) => return Err(Error::already_exists(format!("{} appeared while it was being made", path.display()))),
    }
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => sync(dir),
        None => sync(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::{Bootstrap, Written};
    use outpost_api::{Limits, NewTable, TableWriter};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_bootstrap_is_a_wal_file_with_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot.outpost");
        let boot = Bootstrap::begin(&path, "boot", Limits::default()).await.unwrap();
        let staging = boot.staging_path().to_owned();
        // Its journal is in memory meanwhile: no WAL, no journal file.
        boot.database().create_table(NewTable { name: "t".into(), ..NewTable::default() }).await.unwrap();
        let mode: String =
            rusqlite::Connection::open(&staging).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "a staging file is not in WAL mode");
        let db = boot.finish().await.unwrap();
        drop(db);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("bootstrapping") && !n.ends_with(".lock"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_key_written_is_always_held_and_most_others_are_not() {
        let mut written = Written::new();
        let ids: Vec<String> = (0..100_000).map(|i| format!("r{i:09}")).collect();
        for id in &ids {
            written.insert("t", id);
        }
        assert!(ids.iter().all(|id| written.may_hold("t", id)), "no key written is ever missed");
        // The same ids in another table, and ids never written: a wrong "may" is rare.
        let wrong = ids.iter().filter(|id| written.may_hold("u", id)).count()
            + (0..100_000).filter(|i| written.may_hold("t", &format!("s{i}"))).count();
        assert!(wrong < 20, "{wrong} of 200,000 keys never written seemed held");
    }
}
