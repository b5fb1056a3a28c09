//! Outpost's semantics in one place: canonical bytes and hashes, revision trees, the winner rule,
//! reconcile policies, the local and replicated write rules, seqs and the chain hash, and [`Engine`],
//! the `Database` implementation over the narrow [`storage::Storage`] trait.
//!
//! The engine does no I/O except through its storage trait, and no backend makes a decision the
//! engine could make.
#![forbid(unsafe_code)]

pub use outpost_api::canonical;
pub mod compact;
mod database;
pub mod foreign;
pub mod hash;
mod knowledge;
#[cfg(feature = "memory")]
pub mod memory;
pub mod plan;
pub mod reconcile;
pub mod storage;
pub mod tree;
pub mod validate;
#[cfg(test)]
mod vectors;

pub use database::{CheckReport, CompactProgress, Engine, MAX_LOCAL_DOC_BYTES};
