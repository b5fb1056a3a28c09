//! The CouchDB replication protocol (`/couch/{db}/…`, SPEC §17, crate outpost-couch) on this server:
//! its [`outpost_couch::Host`], which opens a database for a request when the caller the access guard
//! admitted holds the role the route needs — the same rule as every other route's (SPEC §14).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::Extensions;
use outpost_api::{names, Database, Databases, Error, Limits, Result};
use outpost_couch::Need;

use crate::access::{Caller, Role};
use crate::connections::Budgets;

/// The databases a server hosts, as CouchDB servers.
pub(crate) struct Host {
    pub(crate) dbs: Arc<dyn Databases>,
    pub(crate) budgets: Budgets,
    pub(crate) limits: Limits,
}

#[async_trait]
impl outpost_couch::Host for Host {
    async fn database(&self, extensions: &Extensions, db: &str, need: Need) -> Result<Arc<dyn Database>> {
        names::validate_db_name(db)?;
        // Only a request the guard admitted carries a caller; any other is refused, never let through.
        let caller = extensions.get::<Caller>().ok_or_else(|| {
            Error::unauthorized("this server needs an access token: send Authorization: Bearer TOKEN")
        })?;
        let role = match need {
            Need::Read => Role::Read,
            Need::Write => Role::Write,
            Need::Admin => Role::Admin,
        };
        caller.require(db, role)?;
        self.dbs.open(db).await
    }

    fn feed(&self, extensions: &Extensions) -> Result<Box<dyn Send + Sync>> {
        let caller = extensions.get::<Caller>().ok_or_else(|| Error::unauthorized("no caller"))?;
        Ok(Box::new(self.budgets.feed(caller)?))
    }

    fn limits(&self) -> Limits {
        self.limits
    }
}
