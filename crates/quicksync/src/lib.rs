//! Quicksync (SPEC §9): bootstrap a new or long-offline peer from static files instead of record-by-
//! record replication.
//!
//! - [`format`]: the versioned, streamed file format (docs/FORMAT.md), [`format::Writer`] and
//!   [`format::Reader`], which verify seqs and the chain hash as they go.
//! - [`manifest`]: `manifest.csv`, the list of published files, rewritten atomically.
//! - [`publish()`]: write what is new in a database into a directory (deltas, snapshots, manifest).
//! - [`pull()`]: bring a database up to date from a directory or an HTTP(S) URL ([`files`]), walking
//!   back over deltas whose history disagrees with what the database knows.
//! - [`backup`]: portable backups in the same format, which move a database between backends with
//!   its history, knowledge and identity.
//!
//! The database on either side is reached through the outpost-api traits only, so publisher and
//! client work the same on SQLite, PostgreSQL or a remote peer.
#![forbid(unsafe_code)]

pub mod backup;
pub mod files;
pub mod format;
pub mod manifest;
pub mod publish;
pub mod pull;

pub use files::{open as open_files, Files};
pub use format::Kind;
pub use manifest::{Manifest, Row, MANIFEST};
pub use publish::{publish, PublishOptions, PublishProgress, PublishReport, PublishedFile};
pub use pull::{pull, PullOptions, PullProgress, PullReport, PullStart};
