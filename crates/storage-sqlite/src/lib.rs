//! Outpost storage on SQLite (rusqlite with the bundled library): the embedded default.
//!
//! One database is one file (WAL mode). The file holds internal tables whose names start with `_`
//! (`_events`, `_stubs`, `_records`, `_meta`, ...; format 5, see `schema.rs`) and, for each user
//! table, two SQL views for direct reading: `<table>` (reconciled live records) and `<table>_history`
//! (every stored revision).
//!
//! This crate translates the engine's storage trait to SQL; it decides nothing about what a write
//! means.
#![forbid(unsafe_code)]

mod checkpoint;
mod config;
mod error;
mod lifecycle;
mod read;
mod schema;
mod staging;
mod store;
mod trees;
mod write;

pub use checkpoint::BACKSTOP_PAGES as WAL_BACKSTOP_PAGES;
pub use config::BUSY_TIMEOUT;
pub use lifecycle::{backup, create_file, create_file_as, open_file, restore, vacuum, SqliteDatabases, IDLE_CLOSE};
pub use schema::FORMAT_VERSION;
pub use staging::Bootstrap;
pub use store::SqliteStorage;

/// A database on SQLite.
pub type SqliteDatabase = outpost_engine::Engine<SqliteStorage>;

/// The file extension of database files in a data directory.
pub const FILE_EXTENSION: &str = "outpost";
