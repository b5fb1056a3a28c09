//! Outpost's public API: value types and their wire forms, records and tables, replication types,
//! the split traits every backend and transport implements, and the one error type.
//!
//! This crate does no I/O. `outpost-engine` gives the traits their meaning on local storage;
//! `outpost-client` implements them over HTTP, so code written against them works on either.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod body;
pub mod canonical;
mod compact;
mod error;
pub mod names;
#[cfg(feature = "openapi")]
mod openapi;
mod parse;
mod record;
mod replica;
mod retry;
mod rev;
mod scalar;
mod table;
mod traits;
mod value;
mod wire;

pub use body::Body;
pub use compact::{CompactReport, CompactRequest};
pub use error::{Error, ErrorKind, Result};
pub use names::Limits;
pub use record::{
    check_page, BatchResult, Change, ChangesPage, ChangesRequest, GetOptions, ListOptions, LocalDoc, LocalPut,
    LocalRev, PutRecord, Record, RecordPage, WriteOp, WriteOpKind, WriteResult, DEFAULT_PAGE, MAX_PAGE,
    PENDING_EXACT_UP_TO,
};
pub use replica::{
    changes_from_json, revisions_from_json, DbInfo, Epoch, KnowledgeRow, KnowledgeUpdate, PutRevisionsResult,
    RecordRevs, ResumePoint, RevisionData, RevisionEvent, RevisionJson,
};
pub use retry::RetryPolicy;
pub use rev::{ChainHash, Digest, RevId, RevText, MAX_GENERATION};
pub use scalar::{format_float, Decimal, Timestamp};
pub use table::{FieldDecl, NewTable, ReconcilePolicy, TableDef, TableUpdate};
pub use traits::{
    ChangeReader, Database, Databases, InfoReader, LocalDocs, Maintenance, RecordReader, RecordWriter, ReplicaSource,
    ReplicaTarget, TableReader, TableWriter,
};
pub use uuid::Uuid;
pub use value::{Attributes, Value, ValueType};
pub use wire::{from_json_bytes, from_json_bytes_by, json_len};
