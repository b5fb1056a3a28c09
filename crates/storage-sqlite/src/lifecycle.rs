//! A database file's life: creating one (built under a staging name and moved into place), opening
//! and migrating one, backing up and restoring, and [`SqliteDatabases`], the database files of a data
//! directory, closing those idle and unheld, closing a database before its files are removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outpost_api::{names, Database, Databases, Epoch, Error, InfoReader, Limits, Result};
use outpost_engine::storage::{blocking, Genesis, Storage};
use rusqlite::{params, OptionalExtension};
use tokio::sync::Mutex;

use crate::config::{open_connection_with, Durability};
use crate::error::SqlResultExt;
use crate::staging::{move_into_place, remove_stale_names, Claim};
use crate::{schema, SqliteDatabase, SqliteStorage, FILE_EXTENSION};

/// Make the empty file a database will be written into, readable by its owner only (SPEC §14: database
/// files 0600; SQLite gives its `-wal` and `-shm` files the same mode). AlreadyExists if it is there.
pub(crate) fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::already_exists(format!("{} exists", path.display())),
        _ => Error::unavailable(format!("cannot create {}: {e}", path.display())),
    })
}

pub(crate) fn remove_with_wal(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

impl SqliteStorage {
    /// Create a new database file. AlreadyExists when the file exists.
    pub fn create(path: &Path, genesis: &Genesis) -> Result<Self> {
        if path.exists() {
            return Err(Error::already_exists(format!("{} exists", path.display())));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            return Err(Error::not_found(format!("directory {} does not exist", dir.display())));
        }
        // Built under a staging name and moved into place, so a crash never leaves a half-made file
        // where the database should be.
        let claim = Claim::take(path, ".creating")?;
        let built =
            Self::build(&claim.staging, genesis, Durability::Full).and_then(|()| move_into_place(&claim.staging, path));
        if let Err(e) = built {
            remove_with_wal(&claim.staging);
            return Err(e);
        }
        claim.done();
        Self::open(path)
    }

    /// Write a new database's schema and identity (decided by the engine) to `path`, and close it. A
    /// staging file is built without the indexes a bootstrap makes at its end.
    pub(crate) fn build(path: &Path, genesis: &Genesis, durability: Durability) -> Result<()> {
        create_private(path)?;
        let mut conn = open_connection_with(path, true, durability)?;
        schema::migrate(&mut conn)?;
        if durability == Durability::Staging {
            for (index, _) in schema::DEFERRED_INDEXES {
                conn.execute_batch(&format!("DROP INDEX {index}")).sql()?;
            }
        }
        let (head, epoch) = (&genesis.head, genesis.epoch());
        let tx = conn.transaction().sql()?;
        tx.execute("INSERT INTO _meta (key, value) VALUES ('name', ?1)", [&genesis.name]).sql()?;
        tx.execute("INSERT INTO _meta (key, value) VALUES ('update_seq', ?1)", [head.update_seq as i64]).sql()?;
        tx.execute("INSERT INTO _meta (key, value) VALUES ('chain', ?1)", [&head.chain.0[..]]).sql()?;
        tx.execute(
            "INSERT INTO _epochs (position, uuid, start_seq) VALUES (0, ?1, ?2)",
            params![&epoch.uuid.as_bytes()[..], epoch.start_seq as i64],
        )
        .sql()?;
        tx.commit().sql()?;
        // Closing the only connection checkpoints the WAL into the file and removes it (a staging
        // file has no WAL: its journal is in memory).
        conn.close().map_err(|(_, e)| crate::error::map(e))?;
        Ok(())
    }

    /// Open an existing database file. NotFound when there is none; a clear error for a file that is
    /// not an Outpost database or has a newer format.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Durability::Full)
    }

    pub(crate) fn open_with(path: &Path, durability: Durability) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::invalid(format!("{} is a directory, not a database file", path.display())));
        }
        if !path.is_file() {
            return Err(Error::not_found(format!("no database file at {}", path.display())));
        }
        if durability == Durability::Full {
            remove_stale_names(path);
        }
        let mut conn = open_connection_with(path, false, durability)?;
        let not_outpost = || Error::invalid(format!("{} is not an Outpost database", path.display()));
        let version = schema::version(&conn).map_err(|_| not_outpost())?;
        if version == 0 {
            return Err(not_outpost());
        }
        schema::migrate(&mut conn)?;
        let name: String = conn
            .query_row("SELECT value FROM _meta WHERE key = 'name'", [], |r| r.get(0))
            .optional()
            .sql()?
            .ok_or_else(not_outpost)?;
        // A staging file being bootstrapped that holds no revision yet: its writes are tracked, so
        // that trees are read only of records they may have named (`staging::Written`).
        let empty = durability == Durability::Staging
            && conn
                .query_row("SELECT NOT EXISTS (SELECT 1 FROM _events) AND NOT EXISTS (SELECT 1 FROM _stubs)", [], |r| {
                    r.get::<_, bool>(0)
                })
                .sql()?;
        let mut storage = SqliteStorage::new(name, path, conn, durability);
        if empty {
            storage.written = Some(Arc::new(std::sync::Mutex::new(crate::staging::Written::new())));
        }
        Ok(storage)
    }

    /// Write a consistent copy of the database to the new file `to` (SQLite's `VACUUM INTO`: one read
    /// transaction, so writers may go on; the copy is compact and self-contained, without a WAL).
    pub async fn backup_to(&self, to: &Path) -> Result<()> {
        if to.exists() {
            return Err(Error::already_exists(format!("{} exists; a backup never overwrites a file", to.display())));
        }
        let target = to.to_str().ok_or_else(|| Error::invalid(format!("{} is not a UTF-8 path", to.display())))?;
        let (to, target) = (to.to_owned(), target.to_owned());
        self.run(move |conn| {
            // VACUUM INTO writes into an empty file as into a new one, keeping its mode.
            create_private(&to)?;
            if let Err(e) = conn.execute("VACUUM INTO ?1", [target]).sql() {
                let _ = std::fs::remove_file(&to);
                return Err(e);
            }
            Ok(())
        })
        .await
    }

    /// Rewrite the file without its free pages (SQLite's `VACUUM`), switching a file made before
    /// incremental vacuum to it, so that later compactions return their space at once. Writers wait
    /// while it runs, and it needs free disk space about the database's size.
    pub async fn vacuum(&self) -> Result<()> {
        self.run(|conn| conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;").sql()).await?;
        self.truncate_wal().await
    }

    /// Set the name recorded in the file (a restored copy takes the name it is restored under).
    pub async fn set_name(&mut self, name: &str) -> Result<()> {
        outpost_api::names::validate_db_name(name)?;
        let new = name.to_owned();
        self.run(move |conn| conn.execute("UPDATE _meta SET value = ?1 WHERE key = 'name'", [new]).sql()).await?;
        self.name = name.to_owned();
        Ok(())
    }
}

/// Create a new database file at `path` named `name`. AlreadyExists if the file exists.
pub async fn create_file(path: &Path, name: &str, limits: Limits) -> Result<SqliteDatabase> {
    create_file_as(path, Genesis::new(name)?, limits).await
}

/// Create a new database file at `path` with the identity `genesis` (a restore from a portable backup
/// begins as the original began: `Genesis::restored`). AlreadyExists if the file exists.
pub async fn create_file_as(path: &Path, genesis: Genesis, limits: Limits) -> Result<SqliteDatabase> {
    let path = path.to_owned();
    let storage = blocking(move || SqliteStorage::create(&path, &genesis)).await??;
    outpost_engine::Engine::new(storage, limits).await
}

/// Open an existing database file. NotFound when there is none.
pub async fn open_file(path: &Path, limits: Limits) -> Result<SqliteDatabase> {
    let path = path.to_owned();
    let storage = blocking(move || SqliteStorage::open(&path)).await??;
    outpost_engine::Engine::new(storage, limits).await
}

/// Write a backup of `db` to the new file `to`: a consistent, self-contained copy taken while writers
/// go on. Restore it with [`restore`].
pub async fn backup(db: &SqliteDatabase, to: &Path) -> Result<()> {
    db.storage().backup_to(to).await
}

/// Rewrite `db`'s file without free pages ([`SqliteStorage::vacuum`]).
pub async fn vacuum(db: &SqliteDatabase) -> Result<()> {
    db.storage().vacuum().await
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
    let claim = Claim::take(path, ".restoring")?;
    let staging = claim.staging.clone();
    // Copy through SQLite, so a source in WAL mode is read consistently (its WAL included).
    SqliteStorage::open(from)?.backup_to(&staging).await?;
    let restored = async {
        let mut storage = SqliteStorage::open(&staging)?;
        storage.set_name(name).await?;
        let db = outpost_engine::Engine::new(storage, limits).await?;
        db.reidentify().await?;
        // Closed before its file is moved: no connection (nor a background checkpoint) may use it then.
        db.storage().close().await;
        Ok::<_, Error>(())
    }
    .await;
    let moved = match restored {
        Ok(()) => {
            let (from, to) = (staging.clone(), path.to_owned());
            blocking(move || move_into_place(&from, &to)).await.and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = moved {
        remove_with_wal(&staging);
        return Err(e);
    }
    claim.done();
    let db = open_file(path, limits).await?;
    let epoch = *db.info().await?.epochs.last().expect("a database has an epoch");
    Ok((db, epoch))
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
