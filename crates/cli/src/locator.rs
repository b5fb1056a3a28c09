//! Database locators: how a command names the database it works on (SPEC §12): a SQLite file path,
//! `http(s)://host:port/dbs/NAME` on an Outpost server, or a `postgres://…` URL plus `--db NAME` (the
//! Outpost database, a schema in that PostgreSQL database).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use outpost_api::{CompactReport, CompactRequest, Database, Epoch, Error, Limits, Result};
use outpost_client::ClientConfig;
use outpost_engine::{CheckReport, CompactProgress};
use outpost_postgres::{PostgresConfig, PostgresDatabase, PostgresDatabases};
use outpost_sqlite::SqliteDatabase;

/// The `--db` option: which Outpost database a `postgres://` locator means.
static POSTGRES_DB: OnceLock<Option<String>> = OnceLock::new();

/// Record the `--db` option, once, before any locator is used.
pub fn set_postgres_db(name: Option<String>) {
    let _ = POSTGRES_DB.set(name);
}

/// The Outpost database a `postgres://` locator names (`--db`).
fn postgres_db(url: &str) -> Result<String> {
    POSTGRES_DB.get().cloned().flatten().ok_or_else(|| {
        Error::invalid(format!(
            "{} is a PostgreSQL server; name the Outpost database in it with --db NAME",
            shown_postgres(url)
        ))
    })
}

/// A PostgreSQL URL as messages show it: without its password.
fn shown_postgres(url: &str) -> String {
    PostgresConfig::from_url(url).map_or_else(|_| "a postgres:// URL".to_owned(), |c| c.shown().to_owned())
}

/// Where a database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locator {
    /// A SQLite database file.
    File(PathBuf),
    /// A database hosted by an Outpost server.
    Http(String),
    /// A database in a PostgreSQL schema.
    Postgres(String),
}

impl FromStr for Locator {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::invalid("the database locator is empty"));
        }
        let Some((scheme, _)) = s.split_once("://") else {
            return Ok(Locator::File(PathBuf::from(s)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Ok(Locator::Http(s.to_owned())),
            "postgres" | "postgresql" => Ok(Locator::Postgres(s.to_owned())),
            // A relative path may contain "://" only in odd file names; say how to reach them.
            _ => Err(Error::invalid(format!(
                "unknown locator scheme {scheme:?} in {s:?}: expected a file path, http(s):// or postgres:// \
                 (write ./{s} for a file of that name)"
            ))),
        }
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::File(path) => write!(f, "{}", path.display()),
            Locator::Http(url) => f.write_str(url),
            Locator::Postgres(url) => match POSTGRES_DB.get().cloned().flatten() {
                Some(db) => write!(f, "{} --db {db}", shown_postgres(url)),
                None => f.write_str(&shown_postgres(url)),
            },
        }
    }
}

impl Locator {
    /// The file of a local locator, or the error for a locator form this build cannot open yet.
    fn file(&self) -> Result<&Path> {
        match self {
            Locator::File(path) => Ok(path),
            Locator::Http(url) => Err(Error::invalid(format!("{url} is a database on a server, not a local file"))),
            Locator::Postgres(url) => {
                Err(Error::invalid(format!("{} is a PostgreSQL database, not a local file", shown_postgres(url))))
            }
        }
    }

    /// Open an existing database. NotFound when there is none.
    pub async fn open(&self, limits: Limits) -> Result<OpenDatabase> {
        self.open_with(limits, &crate::remote::config()).await
    }

    /// [`Locator::open`], reaching a server with `client` (its token and CA).
    pub async fn open_with(&self, limits: Limits, client: &ClientConfig) -> Result<OpenDatabase> {
        if let Locator::Http(url) = self {
            warn_if_plain(url, client);
            let db = outpost_client::connect_with(url, client.clone())?;
            // Fail now, clearly, when the database or the server is not there.
            outpost_api::InfoReader::info(&db).await?;
            return Ok(OpenDatabase { database: Arc::new(db), local: None });
        }
        if let Locator::Postgres(url) = self {
            let name = postgres_db(url)?;
            let dbs = PostgresDatabases::connect_url(url, limits).await?;
            let db = dbs.open_postgres(&name).await?;
            return Ok(OpenDatabase::local(LocalEngine::Postgres(db)));
        }
        let path = self.file()?;
        tracing::debug!(path = %path.display(), "opening database file");
        let db = outpost_sqlite::open_file(path, limits).await.map_err(|e| in_file(e, path))?;
        Ok(OpenDatabase::local(LocalEngine::Sqlite(Arc::new(db))))
    }

    /// Create a database named `name`. AlreadyExists when there is one.
    pub async fn create(&self, name: &str, limits: Limits) -> Result<OpenDatabase> {
        self.create_with(name, limits, &crate::remote::config()).await
    }

    /// [`Locator::create`], reaching a server with `client` (its token and CA).
    pub async fn create_with(&self, name: &str, limits: Limits, client: &ClientConfig) -> Result<OpenDatabase> {
        if let Locator::Http(url) = self {
            let (base, db_name) = url
                .split_once("/dbs/")
                .ok_or_else(|| Error::invalid(format!("{url}: expected http(s)://host:port/dbs/NAME")))?;
            if db_name.trim_end_matches('/') != name {
                return Err(Error::invalid(format!("{url} names database {db_name:?}, not {name:?}")));
            }
            let server = outpost_client::RemoteDatabases::with_config(base, client.clone())?;
            let database = Arc::new(server.create_remote(name).await?);
            return Ok(OpenDatabase { database, local: None });
        }
        if let Locator::Postgres(url) = self {
            if let Some(db) = POSTGRES_DB.get().cloned().flatten().filter(|db| db != name) {
                return Err(Error::invalid(format!("--db names database {db:?}, not {name:?}")));
            }
            let dbs = PostgresDatabases::connect_url(url, limits).await?;
            let db = dbs.create_postgres(name).await?;
            return Ok(OpenDatabase::local(LocalEngine::Postgres(db)));
        }
        let path = self.file()?;
        let db = outpost_sqlite::create_file(path, name, limits).await.map_err(|e| in_file(e, path))?;
        Ok(OpenDatabase::local(LocalEngine::Sqlite(Arc::new(db))))
    }

    /// The name a new database gets when none is given: the file stem, or a URL's database name.
    pub fn default_name(&self) -> Result<String> {
        if let Locator::Postgres(url) = self {
            return postgres_db(url);
        }
        if let Locator::Http(url) = self {
            if let Some((_, name)) = url.split_once("/dbs/") {
                return Ok(name.trim_end_matches('/').to_owned());
            }
        }
        let path = self.file()?;
        path.file_stem().and_then(|s| s.to_str()).map(str::to_owned).ok_or_else(|| {
            Error::invalid(format!("{}: no database name in the file name; pass --name", path.display()))
        })
    }
}

/// Warn when a token is about to cross a network unencrypted (`http://` to another machine).
fn warn_if_plain(url: &str, client: &ClientConfig) {
    let Some(rest) = url.strip_prefix("http://") else { return };
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if client.token.is_some() && !loopback {
        crate::output::note(&format!("warning: the access token travels unencrypted to {host} (use https://)"));
    }
}

/// Name the file in a storage error unless the message already does.
fn in_file(e: Error, path: &Path) -> Error {
    let shown = path.display().to_string();
    if e.message.contains(&shown) {
        e
    } else {
        e.context(shown)
    }
}

/// A concrete local engine: what maintenance commands (check, reidentify) need beyond the api traits.
pub enum LocalEngine {
    /// A database in a SQLite file.
    Sqlite(Arc<SqliteDatabase>),
    /// A database in a PostgreSQL schema (its engine keeps the connection pool).
    Postgres(Arc<PostgresDatabase>),
}

impl LocalEngine {
    /// Verify every revision hash and the chain.
    pub async fn check(&self) -> Result<CheckReport> {
        match self {
            LocalEngine::Sqlite(db) => db.check().await,
            LocalEngine::Postgres(db) => db.check().await,
        }
    }

    /// Compact (SPEC §4.5), telling `progress` after every batch.
    pub async fn compact(
        &self,
        request: CompactRequest,
        progress: &(dyn Fn(CompactProgress<'_>) + Send + Sync),
    ) -> Result<CompactReport> {
        match self {
            LocalEngine::Sqlite(db) => db.compact_with_progress(request, progress).await,
            LocalEngine::Postgres(db) => db.compact_with_progress(request, progress).await,
        }
    }

    /// Rewrite a SQLite file without its free pages ([`LocalEngine::can_vacuum`] says whether it can).
    pub async fn vacuum(&self) -> Result<()> {
        self.can_vacuum()?;
        match self {
            LocalEngine::Sqlite(db) => outpost_sqlite::vacuum(db).await,
            LocalEngine::Postgres(_) => Ok(()),
        }
    }

    /// InvalidInput on PostgreSQL, whose tables PostgreSQL vacuums.
    pub fn can_vacuum(&self) -> Result<()> {
        match self {
            LocalEngine::Sqlite(_) => Ok(()),
            LocalEngine::Postgres(_) => Err(Error::invalid(
                "--vacuum is for SQLite files: PostgreSQL's autovacuum makes the space reusable, and VACUUM FULL returns it",
            )),
        }
    }

    /// Begin a new epoch.
    pub async fn reidentify(&self) -> Result<Epoch> {
        match self {
            LocalEngine::Sqlite(db) => db.reidentify().await,
            LocalEngine::Postgres(db) => db.reidentify().await,
        }
    }

    /// Write a consistent backup to the new file `to`.
    pub async fn backup(&self, to: &Path) -> Result<()> {
        match self {
            LocalEngine::Sqlite(db) => outpost_sqlite::backup(db, to).await,
            // `outpost db backup` writes a portable backup of a PostgreSQL database (`backup.rs`).
            LocalEngine::Postgres(_) => Err(Error::invalid(format!(
                "a PostgreSQL database's backup is portable: a directory of quicksync files ({})",
                to.display()
            ))),
        }
    }
}

/// An opened database: the api traits, and the local engine when the database is local.
pub struct OpenDatabase {
    database: Arc<dyn Database>,
    local: Option<LocalEngine>,
}

impl OpenDatabase {
    pub(crate) fn local(engine: LocalEngine) -> Self {
        let database: Arc<dyn Database> = match &engine {
            LocalEngine::Sqlite(db) => db.clone(),
            LocalEngine::Postgres(db) => db.clone(),
        };
        OpenDatabase { database, local: Some(engine) }
    }

    /// The database through the api traits.
    pub fn database(&self) -> &dyn Database {
        self.database.as_ref()
    }

    /// The local engine, for work only a local database can do (`what` names it in the error).
    pub fn engine(&self, what: &str) -> Result<&LocalEngine> {
        self.local
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("{what} works on a local database only, not through a remote peer")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_are_recognised_by_form() {
        let cases = [
            ("field.outpost", Locator::File("field.outpost".into())),
            ("./data/a.db", Locator::File("./data/a.db".into())),
            ("/abs/path", Locator::File("/abs/path".into())),
            ("http://localhost:7070/dbs/a", Locator::Http("http://localhost:7070/dbs/a".into())),
            ("HTTPS://h/dbs/a", Locator::Http("HTTPS://h/dbs/a".into())),
            ("postgres://u@h/db", Locator::Postgres("postgres://u@h/db".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Locator>().unwrap(), want, "{text}");
        }
        assert!("ftp://x".parse::<Locator>().is_err());
        assert!("".parse::<Locator>().is_err());
    }

    #[test]
    fn remote_locators_are_not_files() {
        let e = Locator::Http("http://h/dbs/a".into()).file().unwrap_err();
        assert_eq!(e.kind, outpost_api::ErrorKind::InvalidInput);
        assert!(e.message.contains("not a local file"), "{}", e.message);
        assert_eq!(Locator::Http("http://h:1/dbs/a".into()).default_name().unwrap(), "a");
    }

    #[test]
    fn postgres_locators_never_show_the_password() {
        let locator: Locator = "postgres://ann:secret@h:5433/d".parse().unwrap();
        assert!(!locator.to_string().contains("secret"), "{locator}");
        assert!(locator.to_string().starts_with("postgres://ann@h:5433/d"), "{locator}");
        let e = locator.file().unwrap_err();
        assert!(e.message.contains("not a local file") && !e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn the_default_name_is_the_file_stem() {
        assert_eq!(Locator::File("dir/field.outpost".into()).default_name().unwrap(), "field");
        assert_eq!(Locator::File("plain".into()).default_name().unwrap(), "plain");
    }
}
