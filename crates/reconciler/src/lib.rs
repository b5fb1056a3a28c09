//! Replication between any two Outpost databases (SPEC §7, §8), written only against the
//! `outpost-api` traits: a local engine (SQLite, PostgreSQL) and a remote HTTP peer are
//! interchangeable as source or target.
//!
//! One pass: choose the start point ([`start`]: the best of the target's resume point and its
//! knowledge about any epoch of the source, each verified against the source's chain hash), page the
//! source's changes feed, ask the target which leaves it lacks, fetch exactly those revisions with
//! their ancestry, and store them with the new resume point in one transaction. The next page is read
//! while the current one is written; memory is bounded by the batch size. When the feed is drained
//! (and only then) the target records knowledge: the source's position and the source's own
//! knowledge rows up to it.
//!
//! A pass interrupted anywhere loses and duplicates nothing: data and resume point commit together,
//! so a rerun (or the automatic retry after a network fault) continues from the committed point.

mod options;
mod pass;
mod report;
mod requests;
pub mod start;

pub use options::{Options, Progress, ProgressFn};
pub use pass::{replicate, sync, Source, Target};
pub use report::{Origin, Report, StartPoint};
pub use requests::DEFAULT_MAX_REQUEST_BYTES;
pub use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod tests;
