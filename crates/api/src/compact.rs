//! Compaction (SPEC §4.5): what to compact and what it freed.

use serde::{Deserialize, Serialize};

/// What to compact.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompactRequest {
    /// The table to compact; absent: every user table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub table: Option<String>,
    /// Generations of bodies kept below every leaf. Absent: each table's own `keep_bodies`, and 0
    /// (only leaves, and the bases of open `merge-fields` conflicts, keep their bodies) for a table
    /// that sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub keep_bodies: Option<u64>,
    /// Only the tables whose definitions set `keep_bodies`, each to its own (what the server's
    /// schedule runs); `keep_bodies` must then be absent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
    /// Only records changed after this seq (default 0: every record). A record's droppable bodies
    /// change only when it gets a revision, which gives it a later seq: a compaction that starts at
    /// the last one's `upto` finds everything new, as long as no table's `keep_bodies` was lowered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a compaction did.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompactReport {
    /// The update_seq when it began: it covered the records changed up to it (those changed later
    /// are the next compaction's).
    pub upto: u64,
    /// Records whose revision trees were read.
    pub records: u64,
    /// Revisions whose bodies were dropped (their ids, parents and seqs stay).
    pub bodies_dropped: u64,
    /// The bytes of those bodies as stored.
    pub body_bytes: u64,
    /// The database's size in its storage before, when the backend tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_before: Option<u64>,
    /// Its size after, space returned to the file system included (SQLite); on PostgreSQL the freed
    /// space is reused by later writes (or returned by `VACUUM FULL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_after: Option<u64>,
}
