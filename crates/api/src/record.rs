//! Records, writes and reads, changes: the request and response types of the record traits.

use serde::{Deserialize, Serialize};

use crate::{Attributes, ChainHash, Error, RevId};

/// A record as read: its reconciled state (SPEC §4.4).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The winning revision.
    pub rev: RevId,
    /// Whether the winner is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// The reconciled attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Non-deleted leaves other than the winner (asked for with `conflicts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<RevId>>,
    /// Fields that a `merge-fields` merge could not settle (asked for with `conflicts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_conflicts: Option<Vec<String>>,
    /// The revision's ancestry, itself first, then parent to root (asked for with `revs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<RevId>>,
}

/// Options of `get_record`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GetOptions {
    /// Read this revision's own body instead of the reconciled state (it may be any stored revision).
    #[serde(default)]
    pub rev: Option<RevId>,
    /// Include conflicts and field conflicts.
    #[serde(default)]
    pub conflicts: bool,
    /// Include the revision history.
    #[serde(default)]
    pub revs: bool,
}

/// A local write of a record body: what `put_record` takes, and the body of the HTTP record writes.
// `A` is the attributes' form: `Attributes` (the typed wire form), or plain JSON for a server reading
// `?format=plain` before it converts them (the one write shape for both). The OpenAPI document leaves `null` out of the optional fields' schemas (it means the same as
// leaving the field out): a `oneOf` of `null` and a pattern or a reference is what Schemathesis
// cannot negate.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PutRecord<A = Attributes> {
    /// The record id; generated (UUID v7) when absent. Over HTTP, a `PUT` names it in the path (a
    /// body naming another is refused).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub id: Option<String>,
    /// The revision this write edits; must be a current leaf. `None` creates the record (or revives
    /// it after a delete). Over HTTP, `If-Match` may carry it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub rev: Option<RevId>,
    /// The new attributes (empty when absent).
    #[serde(default)]
    pub attributes: A,
    /// Conflicting leaves this write resolves: each gets a tombstone in the same transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolves: Vec<RevId>,
}

/// The outcome of a write.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteResult {
    /// The table.
    pub table: String,
    /// The record id (generated ones included).
    pub id: String,
    /// The revision now current for this write (new, or the existing one for a retry or no-op).
    pub rev: RevId,
}

/// What a batch operation does.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WriteOpKind {
    /// Create or update.
    Put,
    /// Delete (write a tombstone).
    Delete,
}

/// One operation of a batch.
// `A` is the attributes' form, as for `PutRecord`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteOp<A = Attributes> {
    /// Put or delete.
    pub op: WriteOpKind,
    /// The table.
    pub table: String,
    /// The record id (required for delete; generated for put when absent).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub id: Option<String>,
    /// The edited revision (see [`PutRecord::rev`]).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub rev: Option<RevId>,
    /// Attributes of a put.
    #[serde(default)]
    pub attributes: A,
    /// Leaves resolved by a put.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolves: Vec<RevId>,
}

impl WriteOp {
    /// A put operation.
    pub fn put(table: impl Into<String>, put: PutRecord) -> Self {
        WriteOp {
            op: WriteOpKind::Put,
            table: table.into(),
            id: put.id,
            rev: put.rev,
            attributes: put.attributes,
            resolves: put.resolves,
        }
    }
    /// A delete operation.
    pub fn delete(table: impl Into<String>, id: impl Into<String>, rev: Option<RevId>) -> Self {
        WriteOp {
            op: WriteOpKind::Delete,
            table: table.into(),
            id: Some(id.into()),
            rev,
            attributes: Attributes::new(),
            resolves: Vec::new(),
        }
    }
}

/// Per-operation results of a batch, in request order.
pub type BatchResult = Vec<Result<WriteResult, Error>>;

/// Options of `list_records`: pages by id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListOptions {
    /// Return records whose id sorts after this one (UTF-8 byte order).
    #[serde(default)]
    pub after: Option<String>,
    /// Most records returned.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Include records whose winner is a tombstone.
    #[serde(default)]
    pub include_deleted: bool,
}

/// The largest page a read may ask for (records, changes, events), and the largest replication
/// batch: the one definition every crate checks against.
pub const MAX_PAGE: usize = 10_000;

/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// A page size (or batch size) checked against the contract, 1 to [`MAX_PAGE`]; `what` names it in
/// the error (`limit`, `--batch-size`, ...).
pub fn check_page(size: u64, what: &str) -> Result<usize, Error> {
    match usize::try_from(size) {
        Ok(n @ 1..=MAX_PAGE) => Ok(n),
        _ => Err(Error::invalid(format!("{what} must be between 1 and {MAX_PAGE}, not {size}"))),
    }
}

fn default_limit() -> usize {
    DEFAULT_PAGE
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions { after: None, limit: default_limit(), include_deleted: false }
    }
}

/// A page of records in id order.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordPage {
    /// The records.
    pub records: Vec<Record>,
    /// The id to pass as `after` for the next page; `None` at the end.
    pub next_after: Option<String>,
}

/// A request for a page of the changes feed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangesRequest {
    /// Entries with seq greater than this.
    #[serde(default)]
    pub since: u64,
    /// Most entries returned.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Only these tables (and their `_tables` definition records).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
}

impl Default for ChangesRequest {
    fn default() -> Self {
        ChangesRequest { since: 0, limit: default_limit(), tables: None }
    }
}

/// One entry of the changes feed: a record at its latest seq.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// The record's latest seq.
    pub seq: u64,
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The winning revision.
    pub rev: RevId,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
    /// Every leaf of the record's revision tree.
    pub leaves: Vec<RevId>,
}

impl From<Change> for crate::RecordRevs {
    /// The record's leaves, as revs-diff takes them: what a replicator asks a target about.
    fn from(c: Change) -> Self {
        crate::RecordRevs { table: c.table, id: c.id, revs: c.leaves }
    }
}

impl ChangesPage {
    /// The page's JSON up to its first entry, as a server streams it (its figures first, then the
    /// entries, `,`-separated, then `]}`): the text the client reads the fast way
    /// (`changes_from_json`).
    pub fn stream_prefix(&self) -> String {
        let chain = self.last_chain.map(|c| format!(",\"last_chain\":\"{c}\"")).unwrap_or_default();
        format!("{{\"last_seq\":{},\"pending\":{}{chain},\"changes\":[", self.last_seq, self.pending)
    }

    /// Every entry's leaves, as revs-diff takes them.
    pub fn leaf_revs(&self) -> Vec<crate::RecordRevs> {
        self.changes.iter().cloned().map(crate::RecordRevs::from).collect()
    }
}

/// A page of the changes feed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangesPage {
    /// Entries in seq order.
    pub changes: Vec<Change>,
    /// Pass as `since` for the next page. When `pending` is 0 it is the database's `update_seq` at the
    /// time of the read, so a drained reader has seen everything up to it.
    pub last_seq: u64,
    /// Entries left after this page (exact up to [`PENDING_EXACT_UP_TO`], that figure beyond).
    pub pending: u64,
    /// The chain hash at `last_seq`, so a replicator can store a verifiable resume point without another
    /// request. Absent from peers that do not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_chain: Option<ChainHash>,
}

/// `pending` is counted exactly up to this figure; past it, it says "at least this many", so that a
/// page costs the same however far behind the reader is. A pass pays the count on every page it
/// reads: at 100,000 the counts were an eighth of a source's work in a first replication.
pub const PENDING_EXACT_UP_TO: u64 = 10_000;

/// A local document (`LocalDocs`, SPEC §17): its revision number and its body.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalDoc {
    /// 1 after the first write, one more after each (CouchDB shows it as `0-N`).
    pub rev: u64,
    /// The body, a JSON object as written.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// A write of a local document (`PUT …/local/{id}`): the revision it replaces (absent: there is
/// none) and the new body.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LocalPut {
    /// The revision replaced; absent to create.
    #[serde(default)]
    pub rev: Option<u64>,
    /// The new body, a JSON object.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// The revision a local document write left (`LocalDocs::put_local`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalRev {
    /// The new revision (the one deleted, for a delete).
    pub rev: u64,
}
