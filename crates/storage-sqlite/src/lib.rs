//! Outpost storage on SQLite (rusqlite with the bundled library): the embedded default.
//!
//! One database is one file (WAL mode). The file holds internal tables whose names start with `_`
//! (`_revisions`, `_records`, `_meta`, ...) and, for each user table, two SQL views for direct reading:
//! `<table>` (reconciled live records) and `<table>_history` (every stored revision).
//!
//! This crate translates the engine's storage trait to SQL; it decides nothing about what a write
//! means.
#![forbid(unsafe_code)]

mod error;
mod schema;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outpost_api::{names, Database, Databases, Epoch, Error, InfoReader, Limits, Result};
use tokio::sync::Mutex;

pub use schema::FORMAT_VERSION;
pub use store::SqliteStorage;

/// A database on SQLite.
pub type SqliteDatabase = outpost_engine::Engine<SqliteStorage>;

/// The file extension of database files in a data directory.
pub const FILE_EXTENSION: &str = "outpost";

/// Create a new database file at `path` named `name`. AlreadyExists if the file exists.
pub async fn create_file(path: &Path, name: &str, limits: Limits) -> Result<SqliteDatabase> {
    let (path, name) = (path.to_owned(), name.to_owned());
    let storage = outpost_engine::storage::blocking(move || SqliteStorage::create(&path, &name)).await??;
    outpost_engine::Engine::new(storage, limits).await
}

/// Open an existing database file. NotFound when there is none.
pub async fn open_file(path: &Path, limits: Limits) -> Result<SqliteDatabase> {
    let path = path.to_owned();
    let storage = outpost_engine::storage::blocking(move || SqliteStorage::open(&path)).await??;
    outpost_engine::Engine::new(storage, limits).await
}

/// Write a backup of `db` to the new file `to`: a consistent, self-contained copy taken while writers
/// go on. Restore it with [`restore`].
pub async fn backup(db: &SqliteDatabase, to: &Path) -> Result<()> {
    db.storage().backup_to(to).await
}

/// Restore a database from `from` (a file written by [`backup`], or a copy of a database file) into
/// the new file `path`, named `name`. The restored database begins a new epoch (SPEC §6): it may lack
/// writes the original made after the copy, so it must not answer to the original's (uuid, seq)
/// pairs for the seqs it writes from now on. The source is read through SQLite (so a database in WAL
/// mode is copied with its WAL) and left as it is.
pub async fn restore(from: &Path, path: &Path, name: &str, limits: Limits) -> Result<(SqliteDatabase, Epoch)> {
    names::validate_db_name(name)?;
    if path.exists() {
        return Err(Error::already_exists(format!("{} exists; restore into a new file", path.display())));
    }
    let staging = staging_path(path);
    store::remove_with_wal(&staging);
    // Copy through SQLite, so a source in WAL mode is read consistently (its WAL included).
    SqliteStorage::open(from)?.backup_to(&staging).await?;
    let restored = async {
        let mut storage = SqliteStorage::open(&staging)?;
        storage.set_name(name).await?;
        let db = outpost_engine::Engine::new(storage, limits).await?;
        db.reidentify().await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = restored.and_then(|()| {
        std::fs::rename(&staging, path)
            .map_err(|e| Error::unavailable(format!("cannot move the restored file to {}: {e}", path.display())))
    }) {
        store::remove_with_wal(&staging);
        return Err(e);
    }
    let db = open_file(path, limits).await?;
    let epoch = *db.info().await?.epochs.last().expect("a database has an epoch");
    Ok((db, epoch))
}

fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".restoring");
    path.with_file_name(name)
}

/// Databases in a directory, one `<name>.outpost` file each. Opened databases are kept open and shared,
/// so every user of one name sees the same writer lock and change notifications. One that nobody has
/// used for [`IDLE_CLOSE`] is closed (its file descriptors given back) when another is opened.
pub struct SqliteDatabases {
    dir: PathBuf,
    limits: Limits,
    open: Mutex<HashMap<String, Opened>>,
    idle_close: Duration,
}

/// An open database and when it was last handed out.
struct Opened {
    db: Arc<SqliteDatabase>,
    used: Instant,
}

/// How long an open database that nobody holds stays open.
pub const IDLE_CLOSE: Duration = Duration::from_secs(60);

impl SqliteDatabases {
    /// Databases in `dir` (created if missing, readable by its owner only: SPEC §14).
    pub fn new(dir: impl Into<PathBuf>, limits: Limits) -> Result<Self> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| Error::unavailable(format!("cannot create data directory {}: {e}", dir.display())))?;
        Ok(SqliteDatabases { dir, limits, open: Mutex::new(HashMap::new()), idle_close: IDLE_CLOSE })
    }

    /// Close databases nobody holds after `idle` instead of [`IDLE_CLOSE`].
    pub fn with_idle_close(mut self, idle: Duration) -> Self {
        self.idle_close = idle;
        self
    }

    /// How many databases are open now.
    pub async fn open_count(&self) -> usize {
        self.open.lock().await.len()
    }

    /// Hand out `db`, remembering the use, and close those nobody has held for a while: only this map
    /// holds them (a stream, poll or job holding one keeps it open) and no work runs on their
    /// connection (a cancelled request's may still).
    fn hand_out(&self, open: &mut HashMap<String, Opened>, name: &str, db: Arc<SqliteDatabase>) -> Arc<SqliteDatabase> {
        let now = Instant::now();
        let idle: Vec<String> = open
            .iter()
            .filter(|(n, o)| {
                *n != name
                    && Arc::strong_count(&o.db) == 1
                    && !o.db.storage().in_use()
                    && now.duration_since(o.used) >= self.idle_close
            })
            .map(|(n, _)| n.clone())
            .collect();
        let closed: Vec<Opened> = idle.iter().filter_map(|n| open.remove(n)).collect();
        if !closed.is_empty() {
            // Closing a connection checkpoints its WAL and syncs: on the blocking pool.
            tokio::task::spawn_blocking(move || drop(closed));
        }
        open.insert(name.to_owned(), Opened { db: db.clone(), used: now });
        db
    }

    /// The file of a database name (validated, so no path tricks).
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        names::validate_db_name(name)?;
        Ok(self.dir.join(format!("{name}.{FILE_EXTENSION}")))
    }

    /// Open a database as its concrete type (for engine-level tools such as check).
    pub async fn open_sqlite(&self, name: &str) -> Result<Arc<SqliteDatabase>> {
        let path = self.path_of(name)?;
        let mut open = self.open.lock().await;
        if let Some(opened) = open.get(name) {
            let db = opened.db.clone();
            return Ok(self.hand_out(&mut open, name, db));
        }
        let db = Arc::new(open_file(&path, self.limits).await.map_err(|e| by_name(name, &path, e))?);
        Ok(self.hand_out(&mut open, name, db))
    }
}

/// An error opening or creating a database of a data directory, as its users (the server's clients)
/// may see it: by the database's name, never its file. An error about the file itself (a directory in
/// its place, a file that is not an Outpost database) is damage to the data directory: Corrupt, with
/// the file's path and SQLite's words in the log only.
fn by_name(name: &str, path: &Path, e: Error) -> Error {
    use outpost_api::ErrorKind;
    match e.kind {
        ErrorKind::NotFound => Error::not_found(format!("database {name:?} does not exist")),
        ErrorKind::AlreadyExists => Error::already_exists(format!("database {name:?} exists")),
        kind if kind.http_status() >= 500 => e,
        _ => {
            tracing::error!(db = name, file = %path.display(), error = %e.message, "a database file of the data directory cannot be opened");
            Error::corrupt(format!(
                "database {name:?} is damaged: its file cannot be opened (the server log has the details)"
            ))
        }
    }
}

#[async_trait]
impl Databases for SqliteDatabases {
    async fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::unavailable(format!("cannot read {}: {e}", self.dir.display())))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(FILE_EXTENSION) {
                continue;
            }
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                if names::validate_db_name(stem).is_ok() {
                    out.push(stem.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Database>> {
        Ok(self.open_sqlite(name).await?)
    }

    async fn create(&self, name: &str) -> Result<Arc<dyn Database>> {
        let path = self.path_of(name)?;
        let mut open = self.open.lock().await;
        if path.exists() {
            return Err(Error::already_exists(format!("database {name:?} exists")));
        }
        let db = Arc::new(create_file(&path, name, self.limits).await.map_err(|e| by_name(name, &path, e))?);
        Ok(self.hand_out(&mut open, name, db))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path_of(name)?;
        let mut open = self.open.lock().await;
        if !path.exists() {
            return Err(Error::not_found(format!("database {name:?} does not exist")));
        }
        // Streams, long-polls and jobs that hold the database end, and its last write finishes,
        // before its files go: nothing writes into an unlinked file.
        if let Some(opened) = open.remove(name) {
            opened.db.close().await;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::unavailable(format!("cannot delete {}: {e}", path.display()))),
            }
        }
        Ok(())
    }
}
