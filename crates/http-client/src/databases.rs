//! [`RemoteDatabases`]: the databases a server hosts, as `outpost_api::Databases`.

use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{Database, Databases, DbInfo, Result};
use reqwest::Method;

use crate::config::ClientConfig;
use crate::database::RemoteDatabase;
use crate::paths::{base_url as checked_base_url, db_segment};
use crate::transport::{Call, Transport};

/// The databases of one Outpost server. One connection pool serves it and every database it
/// opens; cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct RemoteDatabases {
    transport: Arc<Transport>,
}

impl RemoteDatabases {
    /// The server at `base_url` (`http(s)://host:port`, optionally with a path prefix), with the
    /// default [`ClientConfig`]. No request is made. InvalidInput for a URL that is not http(s).
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_config(base_url, ClientConfig::default())
    }

    /// The server at `base_url` with the given timeouts and retry policy.
    pub fn with_config(base_url: &str, config: ClientConfig) -> Result<Self> {
        let transport = Transport::new(checked_base_url(base_url)?, config)?;
        Ok(RemoteDatabases { transport: Arc::new(transport) })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.transport.base()
    }

    /// A handle on the database `name`, without asking the server whether it exists (the first call
    /// tells). InvalidInput for an invalid database name.
    pub fn database(&self, name: &str) -> Result<RemoteDatabase> {
        RemoteDatabase::new(self.transport.clone(), name)
    }

    /// Open an existing database as its concrete type. NotFound when the server has none.
    pub async fn open_remote(&self, name: &str) -> Result<RemoteDatabase> {
        let db = self.database(name)?;
        let _: DbInfo = self.transport.json(Call::get(db_path(name)?)).await?;
        Ok(db)
    }

    /// Create a database and return it as its concrete type. AlreadyExists when the server has one.
    pub async fn create_remote(&self, name: &str) -> Result<RemoteDatabase> {
        let db = self.database(name)?;
        // Not repeated: a second create after a lost answer would report AlreadyExists.
        let _: DbInfo = self.transport.json(Call::new(Method::PUT, db_path(name)?).once()).await?;
        Ok(db)
    }
}

fn db_path(name: &str) -> Result<String> {
    Ok(format!("/dbs/{}", db_segment(name)?))
}

#[async_trait]
impl Databases for RemoteDatabases {
    async fn list(&self) -> Result<Vec<String>> {
        self.transport.json(Call::get("/dbs".to_owned())).await
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Database>> {
        Ok(Arc::new(self.open_remote(name).await?))
    }

    async fn create(&self, name: &str) -> Result<Arc<dyn Database>> {
        Ok(Arc::new(self.create_remote(name).await?))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let _: serde_json::Value = self.transport.json(Call::new(Method::DELETE, db_path(name)?)).await?;
        Ok(())
    }
}
