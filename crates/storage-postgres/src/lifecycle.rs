//! The databases of one PostgreSQL database ([`PostgresDatabases`]): the `_outpost` registry listing
//! them, each in a schema of its own; creating (schema, migrations, the identity the engine decides),
//! opening, migrating and deleting one, and the engines shared by every user of a name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use outpost_api::{Database, Databases, Error, ErrorKind, Limits, Result};
use outpost_engine::storage::Genesis;
use tokio::sync::Mutex;

use crate::config::PostgresConfig;
use crate::{error, notify, schema, PostgresDatabase, PostgresStorage, REGISTRY};

/// What the databases handle and its listener share.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    target: Arc<str>,
    limits: Limits,
    /// Opened databases, kept so that every user of one name shares its engine (and its wake-ups).
    open: Mutex<HashMap<String, Arc<PostgresDatabase>>>,
    pub(crate) commits: notify::Commits,
}

impl Shared {
    async fn conn(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| error::map_pool(e, &self.target))
    }

    fn pg(&self, e: tokio_postgres::Error) -> Error {
        error::map(e, &self.target)
    }

    /// A database is deleted (here or by another process): forget its engine and channel, and close
    /// the engine, so that the streams, long-polls and jobs holding it end.
    pub(crate) async fn forget(&self, name: &str) {
        let engine = self.open.lock().await.remove(name);
        self.commits.forget(name);
        if let Some(engine) = engine {
            engine.close().await;
        }
    }

    async fn engine(&self, name: &str) -> Result<Arc<PostgresDatabase>> {
        let commits = self.commits.subscribe(name);
        let storage = PostgresStorage::new(name, self.pool.clone(), self.target.clone(), Some(commits))?;
        Ok(Arc::new(outpost_engine::Engine::new(storage, self.limits).await?))
    }
}

/// The Outpost databases in one PostgreSQL database: each a schema of the same name, listed in the
/// registry table `_outpost.databases`. Several processes may serve the same PostgreSQL at once.
pub struct PostgresDatabases {
    shared: Arc<Shared>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresDatabases {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresDatabases {
    /// Connect to the PostgreSQL at `url` (see [`PostgresConfig::from_url`]).
    pub async fn connect_url(url: &str, limits: Limits) -> Result<Self> {
        Self::connect(PostgresConfig::from_url(url)?, limits).await
    }

    /// Connect: check that PostgreSQL answers (Unavailable naming the URL, without its password, when it
    /// does not), create or migrate the registry, and start listening for commits of other processes.
    pub async fn connect(config: PostgresConfig, limits: Limits) -> Result<Self> {
        let target: Arc<str> = config.shown().into();
        let manager = Manager::from_config(
            config.pg.clone(),
            config.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| Error::internal(format!("building the connection pool for {target}: {e}")))?;
        let shared =
            Arc::new(Shared { pool, target, limits, open: Mutex::new(HashMap::new()), commits: Default::default() });
        let mut client = shared.conn().await?;
        if !schema::registry_is_current(&client, &shared.target).await? {
            let tx = client.transaction().await.map_err(|e| shared.pg(e))?;
            schema::lock_ddl(&tx, &shared.target).await?;
            schema::migrate_registry(&tx, &shared.target).await?;
            tx.commit().await.map_err(|e| shared.pg(e))?;
        }
        drop(client);
        let listener =
            notify::start(config.pg.clone(), config.tls.clone(), shared.target.to_string(), Arc::downgrade(&shared))
                .await?;
        Ok(PostgresDatabases { shared, listener })
    }

    /// A pooled connection (for tests and tools that inspect or load schemas directly).
    pub async fn connection(&self) -> Result<Object> {
        self.shared.conn().await
    }

    /// The PostgreSQL URL, without its password.
    pub fn shown_url(&self) -> &str {
        &self.shared.target
    }

    /// Open a database as its concrete type (for engine-level tools such as check).
    pub async fn open_postgres(&self, name: &str) -> Result<Arc<PostgresDatabase>> {
        schema::schema_of(name)?;
        let mut open = self.shared.open.lock().await;
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        let mut client = self.shared.conn().await?;
        let target = &self.shared.target;
        let listed = client
            .query_opt(&format!("SELECT 1 FROM {}.databases WHERE name = $1", schema::ident(REGISTRY)), &[&name])
            .await
            .map_err(|e| self.shared.pg(e))?;
        if listed.is_none() {
            return Err(Error::not_found(format!("database {name:?} does not exist")));
        }
        if !schema::database_is_current(&client, name, target).await? {
            let tx = client.transaction().await.map_err(|e| self.shared.pg(e))?;
            schema::lock_ddl(&tx, target).await?;
            schema::migrate_database(&tx, name, target).await?;
            tx.commit().await.map_err(|e| self.shared.pg(e))?;
        }
        drop(client);
        let db = self.shared.engine(name).await?;
        open.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Create a database as its concrete type.
    pub async fn create_postgres(&self, name: &str) -> Result<Arc<PostgresDatabase>> {
        self.create_postgres_as(Genesis::new(name)?).await
    }

    /// Create a database with the identity `genesis` (a restore from a portable backup begins as the
    /// original began: `Genesis::restored`).
    pub async fn create_postgres_as(&self, genesis: Genesis) -> Result<Arc<PostgresDatabase>> {
        let name = genesis.name.as_str();
        let schema = schema::schema_of(name)?;
        let target = &self.shared.target;
        let mut open = self.shared.open.lock().await;
        let mut client = self.shared.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.shared.pg(e))?;
        schema::lock_ddl(&tx, target).await?;
        let registry = schema::ident(REGISTRY);
        let listed = tx.query_opt(&format!("SELECT 1 FROM {registry}.databases WHERE name = $1"), &[&name]).await;
        if listed.map_err(|e| self.shared.pg(e))?.is_some() {
            return Err(Error::already_exists(format!("database {name:?} exists")));
        }
        let taken = tx
            .query_opt("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", &[&name])
            .await
            .map_err(|e| self.shared.pg(e))?;
        if taken.is_some() {
            // The PostgreSQL address stays in the log; the caller learns the name is taken.
            tracing::warn!(db = name, target = %target, "a schema of that name exists and is not an Outpost database");
            return Err(Error::already_exists(format!(
                "a schema named {name:?} exists in the server's PostgreSQL and is not an Outpost database; choose another name"
            )));
        }
        schema::migrate_database(&tx, name, target).await?;
        let (head, epoch) = (&genesis.head, genesis.epoch());
        tx.execute(
            &format!("INSERT INTO {schema}._meta (name, update_seq, chain) VALUES ($1, $2, $3)"),
            &[&genesis.name, &(head.update_seq as i64), &&head.chain.0[..]],
        )
        .await
        .map_err(|e| self.shared.pg(e))?;
        tx.execute(
            &format!("INSERT INTO {schema}._epochs (position, uuid, start_seq) VALUES (0, $1, $2)"),
            &[&epoch.uuid, &(epoch.start_seq as i64)],
        )
        .await
        .map_err(|e| self.shared.pg(e))?;
        tx.execute(&format!("INSERT INTO {registry}.databases (name, schema_name) VALUES ($1, $1)"), &[&name])
            .await
            .map_err(|e| self.shared.pg(e))?;
        tx.commit().await.map_err(|e| self.shared.pg(e))?;
        drop(client);
        // A channel left by an earlier database of this name must not wake the new one's waiters.
        self.shared.commits.forget(name);
        let db = self.shared.engine(name).await?;
        open.insert(name.to_owned(), db.clone());
        Ok(db)
    }
}

impl PostgresDatabases {
    /// Give database `from` the name `to` in one transaction (its schema, its registry row and the
    /// name it records), so that a database built under a temporary name — a restore — appears under
    /// its own only whole. AlreadyExists when `to` is taken (by a database or another schema),
    /// NotFound when `from` does not exist. Its engine is closed first: it names the schema in its SQL.
    pub async fn rename(&self, from: &str, to: &str) -> Result<Arc<PostgresDatabase>> {
        let (old, new) = (schema::schema_of(from)?, schema::schema_of(to)?);
        let target = &self.shared.target;
        self.shared.forget(from).await;
        let mut client = self.shared.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.shared.pg(e))?;
        schema::lock_ddl(&tx, target).await?;
        let registry = schema::ident(REGISTRY);
        let listed = |name: &str| {
            let sql = format!("SELECT 1 FROM {registry}.databases WHERE name = $1");
            let name = name.to_owned();
            let tx = &tx;
            async move { tx.query_opt(&sql, &[&name]).await.map(|r| r.is_some()) }
        };
        if !listed(from).await.map_err(|e| self.shared.pg(e))? {
            return Err(Error::not_found(format!("database {from:?} does not exist")));
        }
        let schema_taken = tx
            .query_opt("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", &[&to])
            .await
            .map_err(|e| self.shared.pg(e))?
            .is_some();
        if schema_taken || listed(to).await.map_err(|e| self.shared.pg(e))? {
            return Err(Error::already_exists(format!("database {to:?} exists")));
        }
        tx.batch_execute(&format!("ALTER SCHEMA {old} RENAME TO {new}")).await.map_err(|e| self.shared.pg(e))?;
        tx.execute(
            &format!("UPDATE {registry}.databases SET name = $2, schema_name = $2 WHERE name = $1"),
            &[&from, &to],
        )
        .await
        .map_err(|e| self.shared.pg(e))?;
        tx.execute(&format!("UPDATE {new}._meta SET name = $1"), &[&to]).await.map_err(|e| self.shared.pg(e))?;
        tx.commit().await.map_err(|e| self.shared.pg(e))?;
        drop(client);
        self.open_postgres(to).await
    }
}

#[async_trait]
impl Databases for PostgresDatabases {
    async fn list(&self) -> Result<Vec<String>> {
        let client = self.shared.conn().await?;
        let rows = client
            .query(&format!("SELECT name FROM {}.databases ORDER BY name", schema::ident(REGISTRY)), &[])
            .await
            .map_err(|e| self.shared.pg(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Database>> {
        Ok(self.open_postgres(name).await?)
    }

    async fn create(&self, name: &str) -> Result<Arc<dyn Database>> {
        Ok(self.create_postgres(name).await?)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let schema = schema::schema_of(name).map_err(|e| match e.kind {
            // A name PostgreSQL reserves was never created here.
            ErrorKind::InvalidInput if outpost_api::names::validate_db_name(name).is_ok() => {
                Error::not_found(format!("database {name:?} does not exist"))
            }
            _ => e,
        })?;
        let target = &self.shared.target;
        // This process's users of the database end, and its last write here finishes, first.
        self.shared.forget(name).await;
        let mut client = self.shared.conn().await?;
        let tx = client.transaction().await.map_err(|e| self.shared.pg(e))?;
        schema::lock_ddl(&tx, target).await?;
        let removed = tx
            .execute(&format!("DELETE FROM {}.databases WHERE name = $1", schema::ident(REGISTRY)), &[&name])
            .await
            .map_err(|e| self.shared.pg(e))?;
        if removed == 0 {
            return Err(Error::not_found(format!("database {name:?} does not exist")));
        }
        tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.map_err(|e| self.shared.pg(e))?;
        tx.execute("SELECT pg_notify($1, $2)", &[&schema::DELETED_CHANNEL, &name])
            .await
            .map_err(|e| self.shared.pg(e))?;
        tx.commit().await.map_err(|e| self.shared.pg(e))?;
        Ok(())
    }
}
