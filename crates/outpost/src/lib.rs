//! Outpost for embedders, in one crate: an offline-first, multi-master record database with
//! replication built in. A field tablet, an edge store and a cloud region run the same engine; any
//! two reconcile whenever they can reach each other, and every peer converges to the same state
//! without losing a write.
//!
//! Every database, wherever it lives, is an [`outpost_api::Database`]: the same traits read, write
//! and replicate a SQLite file, a PostgreSQL schema, a database in memory, or one on a remote server.
//! Pick where databases live with the features:
//!
//! | feature | gives |
//! |---|---|
//! | `sqlite` (default) | [`sqlite`]: one file per database |
//! | `postgres` | [`postgres`]: databases on a PostgreSQL server |
//! | `memory` | [`memory`]: databases in memory, for tests |
//! | `client` | [`client`]: the databases of a remote Outpost server |
//! | `server` | [`server`]: the HTTP API, to serve databases |
//! | `replication` | [`replicate`] and [`sync`] between any two databases |
//! | `quicksync` | [`quicksync`]: snapshot and delta files |
//!
//! ```
//! use outpost::{Attributes, NewTable, PutRecord, RecordReader, RecordWriter, TableWriter, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> outpost::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let db = outpost::sqlite::create_file(&dir.path().join("notes.outpost"), "notes", Default::default()).await?;
//! db.create_table(NewTable { name: "notes".into(), ..Default::default() }).await?;
//! let attributes = Attributes::new().with("text", Value::String("buy milk".into()));
//! let written = db.put_record("notes", PutRecord { id: Some("n1".into()), attributes, ..Default::default() }).await?;
//! let note = db.get_record("notes", "n1", Default::default()).await?;
//! assert_eq!((note.rev, note.attributes.get("text")), (written.rev, Some(&Value::String("buy milk".into()))));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/` (in the repository) has more: two files replicated, and a server synced with.
#![forbid(unsafe_code)]

pub use outpost_api::*;
pub use outpost_engine::{CheckReport, Engine};

/// Databases in SQLite files: [`sqlite::create_file`], [`sqlite::open_file`], and
/// [`sqlite::SqliteDatabases`] over a directory.
#[cfg(feature = "sqlite")]
pub use outpost_sqlite as sqlite;

/// Databases on PostgreSQL: [`postgres::PostgresDatabases`].
#[cfg(feature = "postgres")]
pub use outpost_postgres as postgres;

/// Databases in memory: [`memory::MemoryDatabases`].
#[cfg(feature = "memory")]
pub use outpost_engine::memory;

/// A remote Outpost server's databases: [`client::RemoteDatabases`].
#[cfg(feature = "client")]
pub use outpost_client as client;

/// The HTTP API: [`server::router`], [`server::serve`].
#[cfg(feature = "server")]
pub use outpost_server as server;

/// Replication's options and report.
#[cfg(feature = "replication")]
pub use outpost_reconciler as replication;
#[cfg(feature = "replication")]
pub use outpost_reconciler::{replicate, sync};

/// Quicksync files: [`quicksync::publish`], [`quicksync::pull`].
#[cfg(feature = "quicksync")]
pub use outpost_quicksync as quicksync;

/// The README's Rust snippets, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct Readme;
