//! Outpost storage on PostgreSQL (tokio-postgres with a deadpool pool): the engine's storage trait in one
//! schema per database, and [`PostgresDatabases`], the databases of one PostgreSQL database listed in a
//! registry schema `_outpost`.
//!
//! A database's schema holds internal tables whose names start with `_` (`_events`, `_stubs`, `_records`,
//! `_meta`, ...) and, for each user table, two SQL views for direct reading: `<table>` (reconciled live
//! records) and `<table>_history` (every stored revision). Writers serialise on the schema's `_meta` row,
//! so seqs are gap-free and visible in order across any number of processes; commits are announced with
//! `NOTIFY` so that long-polls on other processes wake (docs/POSTGRES.md).
//!
//! This crate translates the engine's storage trait to SQL; it decides nothing about what a write
//! means.
#![forbid(unsafe_code)]

mod config;
mod error;
mod lifecycle;
mod notify;
mod schema;
mod store;
mod trees;
mod write;

pub use config::{PostgresConfig, DEFAULT_POOL_SIZE};
pub use lifecycle::PostgresDatabases;
pub use schema::{FORMAT_VERSION, REGISTRY};
pub use store::PostgresStorage;

/// A database on PostgreSQL.
pub type PostgresDatabase = outpost_engine::Engine<PostgresStorage>;
