//! Replication types: database identity, revisions with ancestry, resume points and knowledge
//! (SPEC §5–§8).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "openapi")]
use crate::Attributes;
use crate::{Body, ChainHash, Digest, RevId};

mod fast;

/// One epoch of a database's identity: `uuid` names the database's history from `start_seq` on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Epoch {
    /// The epoch's uuid.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub uuid: Uuid,
    /// The first seq this uuid names.
    pub start_seq: u64,
}

/// What `info()` reports about a database.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DbInfo {
    /// The database name.
    pub name: String,
    /// The uuid of the current epoch.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub uuid: Uuid,
    /// Every epoch, oldest first.
    pub epochs: Vec<Epoch>,
    /// The seq of the latest revision event.
    pub update_seq: u64,
    /// The chain hash at `update_seq`.
    pub chain: ChainHash,
    /// Records whose winner is not a tombstone, in user tables.
    pub record_count: u64,
    /// The storage backend (`sqlite`, `postgres`, or `http` for a remote peer's view).
    pub backend: String,
}

/// A revision as replicated: its identity, its body (absent for a stub or a compacted body) and its
/// ancestry from parent to root (possibly truncated).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionData {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The revision id.
    pub rev: RevId,
    /// Whether it is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// The body (read from the wire straight into its canonical bytes and stored JSON, [`Body`]);
    /// `None` when this database holds only the revision's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Attributes>))]
    pub attributes: Option<Body>,
    /// Ancestor revision ids, parent first.
    #[serde(default)]
    pub ancestry: Vec<RevId>,
    /// For a *foreign* revision (SPEC §3: its id was made by another implementation, through the
    /// CouchDB protocol, and is not the hash of its body), its body's digest; absent for a native
    /// one. A receiver re-hashes a body natively first, and takes a body that does not verify only
    /// as foreign, only into a table open to CouchDB peers (`couch: true`), and only when it digests
    /// to this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub foreign: Option<Digest>,
}

/// A revision as a source sends it: [`RevisionData`] with the body as the wire JSON it is stored as,
/// copied without being parsed into attributes and encoded again. Its JSON is exactly
/// [`RevisionData`]'s, so a receiver reads it as one (and re-hashes every body, SPEC §7).
#[derive(Clone, Debug, Serialize)]
pub struct RevisionJson {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The revision id.
    pub rev: RevId,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// The body's wire JSON; `None` when this database holds only the revision's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Box<serde_json::value::RawValue>>,
    /// Ancestor revision ids, parent first.
    pub ancestry: Vec<RevId>,
    /// A foreign revision's body digest ([`RevisionData::foreign`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign: Option<Digest>,
}

impl RevisionJson {
    /// `revision` with its body as wire JSON.
    pub fn encode(revision: RevisionData) -> RevisionJson {
        let RevisionData { table, id, rev, deleted, attributes, ancestry, foreign } = revision;
        let attributes = attributes
            .map(|a| serde_json::value::RawValue::from_string(a.into_json()).expect("a body's JSON is valid JSON"));
        RevisionJson { table, id, rev, deleted, attributes, ancestry, foreign }
    }
}

/// A page of revisions read from its JSON (a JSON array, as `POST /revs/get` answers): the text
/// Outpost writes is read the fast way ([`fast`]: each body's canonical bytes made where it
/// stands, in one scan), any other through `serde`, which takes or refuses it.
pub fn revisions_from_json(text: &str) -> serde_json::Result<Vec<RevisionData>> {
    match fast::revisions(text) {
        Some(revisions) => Ok(revisions),
        None => serde_json::from_str(text),
    }
}

/// A page of the changes feed read from its JSON: as Outpost's server streams it, the fast way
/// ([`fast`]), any other text through `serde`, which takes or refuses it.
pub fn changes_from_json(text: &str) -> serde_json::Result<crate::ChangesPage> {
    match fast::changes(text) {
        Some(page) => Ok(page),
        None => serde_json::from_str(text),
    }
}

impl RevisionEvent {
    /// The revision event `text` starts with and its length in bytes, when it is written as
    /// Outpost writes it (`Serialize`'s JSON; its body canonical wire JSON); `None` otherwise, for
    /// the caller to read the document holding it through `serde`, which takes or refuses it.
    pub fn read_prefix(text: &str) -> Option<(RevisionEvent, usize)> {
        fast::event_prefix(text)
    }
}

/// One revision event as its database stored it, for copying a database's history in seq order
/// (quicksync, SPEC §9): the seq it took, the chain hash after it, and the revision.
///
/// The revision's ancestry runs from its parent through any stubs (ancestors known only by id) and
/// stops after the first ancestor held with a body: that one has an event of its own, which carries
/// the rest of its line. A run of events from seq 1 therefore rebuilds every revision tree exactly.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionEvent {
    /// The event's seq.
    pub seq: u64,
    /// The chain hash after the event.
    pub chain: ChainHash,
    /// The revision stored (with its body, unless compacted).
    pub revision: RevisionData,
}

/// The revisions of one record: a `revs_diff` question or answer, or a `get_revisions` request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordRevs {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// Revision ids.
    pub revs: Vec<RevId>,
}

/// Where a replication from one source stands in a target, stored in the target atomically with the
/// revisions it covers (SPEC §7).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResumePoint {
    /// The source epoch's uuid.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub source: Uuid,
    /// The source seq copied up to.
    pub source_seq: u64,
    /// The source's chain hash at that seq.
    pub source_chain: ChainHash,
}

/// "From local seq `local_seq` on, this database holds every revision that `peer` had stored at or
/// before `peer_seq`" (SPEC §8).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeRow {
    /// The peer epoch's uuid.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub peer: Uuid,
    /// The peer's seq.
    pub peer_seq: u64,
    /// The peer's chain hash at `peer_seq`.
    pub peer_chain: ChainHash,
    /// The local seq from which the knowledge holds.
    pub local_seq: u64,
    /// The database this row was learned through (`None` when learned directly).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "uuid"))]
    pub via: Option<Uuid>,
}

/// What a drained replication pass tells its target (SPEC §8).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeUpdate {
    /// The source epoch's uuid.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub source: Uuid,
    /// The drained source seq.
    pub source_seq: u64,
    /// The source chain hash at `source_seq`.
    pub source_chain: ChainHash,
    /// The source's own knowledge rows with local seq ≤ `source_seq`, to import transitively.
    #[serde(default)]
    pub imported: Vec<KnowledgeRow>,
}

/// The outcome of `put_revisions`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutRevisionsResult {
    /// Revision events stored (revisions new to this database, or bodies filled into stubs).
    pub written: u64,
    /// The database's update_seq after the write.
    pub update_seq: u64,
}
