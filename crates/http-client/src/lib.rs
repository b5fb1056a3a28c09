//! Outpost over HTTP: [`RemoteDatabase`] implements every `outpost-api` trait (hence `Database`)
//! against a server following docs/HTTP.md, and [`RemoteDatabases`] the server's set of databases, so
//! code written against the traits — the reconciler, the CLI, the conformance suite — works unchanged
//! on a URL.
//!
//! Errors come back with the kind the server reported; a server that cannot be reached is
//! `Unavailable`. Idempotent calls are retried with capped exponential backoff ([`RetryPolicy`]);
//! one connection pool serves a `RemoteDatabases` and every database it opens.
//!
//! ```no_run
//! # async fn demo() -> outpost_api::Result<()> {
//! use outpost_api::InfoReader;
//! let db = outpost_client::connect("http://127.0.0.1:7070/dbs/field")?;
//! println!("{:?}", db.info().await?);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod config;
mod database;
mod databases;
mod error;
mod paths;
mod transport;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use config::{AccessToken, ClientConfig, RetryPolicy, MAX_RESPONSE_BYTES};
pub use database::RemoteDatabase;
pub use databases::RemoteDatabases;
pub use paths::{base_url, Locator};

use outpost_api::Result;

/// The database named by a locator `http(s)://host:port/dbs/NAME`, with the default
/// [`ClientConfig`]. No request is made; InvalidInput says what is wrong with the locator.
pub fn connect(url: &str) -> Result<RemoteDatabase> {
    connect_with(url, ClientConfig::default())
}

/// [`connect`] with the given timeouts and retry policy.
pub fn connect_with(url: &str, config: ClientConfig) -> Result<RemoteDatabase> {
    let locator = Locator::parse(url)?;
    RemoteDatabases::with_config(&locator.base, config)?.database(&locator.name)
}
