//! [`RemoteDatabase`]: every `outpost-api` trait over the routes of docs/HTTP.md.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outpost_api::{
    names, BatchResult, ChainHash, ChangeReader, ChangesPage, ChangesRequest, CompactReport, CompactRequest, DbInfo,
    Error, GetOptions, InfoReader, KnowledgeRow, KnowledgeUpdate, ListOptions, LocalDoc, LocalDocs, LocalPut, LocalRev,
    Maintenance, NewTable, PutRecord, PutRevisionsResult, Record, RecordPage, RecordReader, RecordRevs, RecordWriter,
    ReplicaSource, ReplicaTarget, Result, ResumePoint, RevId, RevisionData, RevisionEvent, TableDef, TableReader,
    TableUpdate, TableWriter, Uuid, WriteOp, WriteResult,
};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::error::batch_item;
use crate::paths::{db_segment, record_segment, segment, table_segment};
use crate::transport::{Call, Transport};

/// The longest long-poll the server accepts, in milliseconds (docs/HTTP.md); longer waits are
/// made of several.
const MAX_WAIT_MS: u64 = 300_000;

/// A database on an Outpost server, reached over HTTP. It implements every trait of `outpost-api`,
/// so code written against `Database` works unchanged on a URL. Cloning is cheap; clones share the
/// connection pool.
#[derive(Clone, Debug)]
pub struct RemoteDatabase {
    transport: Arc<Transport>,
    name: String,
    /// `/dbs/{name}`, encoded.
    path: String,
}

/// The body of a record write (the id is in the path).
#[derive(Serialize)]
struct RecordBody<'a> {
    attributes: &'a outpost_api::Attributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<&'a RevId>,
    #[serde(skip_serializing_if = "<[RevId]>::is_empty")]
    resolves: &'a [RevId],
}

#[derive(Serialize)]
struct BulkRequest<'a> {
    ops: &'a [WriteOp],
}

#[derive(Deserialize)]
struct BulkResponse {
    results: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct PutRevisionsRequest<'a> {
    revisions: &'a [RevisionData],
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<&'a ResumePoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    knowledge: Option<&'a KnowledgeUpdate>,
}

#[derive(Deserialize)]
struct UpdateSeq {
    update_seq: u64,
}

#[derive(Deserialize)]
struct ChainAt {
    chain: ChainHash,
}

/// `{"ok": true}`; the field is not checked, the status is the answer.
#[derive(Deserialize)]
struct Done {}

impl RemoteDatabase {
    /// The database `name` on the server of `transport` (no request is made).
    pub(crate) fn new(transport: Arc<Transport>, name: &str) -> Result<Self> {
        let path = format!("/dbs/{}", db_segment(name)?);
        Ok(RemoteDatabase { transport, name: name.to_owned(), path })
    }

    /// The database's name on its server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL (`http://host:port/dbs/NAME`).
    pub fn url(&self) -> String {
        format!("{}{}", self.transport.base(), self.path)
    }

    fn table_path(&self, table: &str) -> Result<String> {
        Ok(format!("{}/tables/{}", self.path, table_segment(table)?))
    }

    /// A call on one record: `/records/{id}`, or `/record?id=` for ids a path cannot carry.
    fn record_call(&self, method: Method, table: &str, id: &str) -> Result<Call> {
        let table_path = self.table_path(table)?;
        Ok(match record_segment(id)? {
            Some(segment) => Call::new(method, format!("{table_path}/records/{segment}")),
            None => Call::new(method, format!("{table_path}/record")).query("id", id),
        })
    }

    /// `…/tables/{table}/local/{id}`; InvalidInput for an id a path segment cannot carry.
    fn local_path(&self, table: &str, id: &str) -> Result<String> {
        let segment = record_segment(id)?.ok_or_else(|| {
            Error::invalid(format!("local document id {id:?} cannot be sent in a URL path to a remote database"))
        })?;
        Ok(format!("{}/local/{segment}", self.table_path(table)?))
    }

    async fn send_json<T: serde::de::DeserializeOwned + Send + 'static>(&self, call: Call) -> Result<T> {
        self.transport.json(call).await
    }
}

#[async_trait]
impl TableReader for RemoteDatabase {
    async fn get_table(&self, name: &str) -> Result<TableDef> {
        self.send_json(Call::get(self.table_path(name)?)).await
    }

    async fn list_tables(&self) -> Result<Vec<TableDef>> {
        self.send_json(Call::get(format!("{}/tables", self.path))).await
    }
}

#[async_trait]
impl TableWriter for RemoteDatabase {
    async fn create_table(&self, table: NewTable) -> Result<TableDef> {
        let path = self.table_path(&table.name)?;
        let mut body = serde_json::to_value(&table).map_err(|e| Error::invalid(format!("cannot encode table: {e}")))?;
        if let Some(fields) = body.as_object_mut() {
            fields.remove("name");
        }
        // Not repeated: a second create after a lost answer would report AlreadyExists.
        self.send_json(Call::new(Method::PUT, path).json(&body)?.once()).await
    }

    async fn update_table(&self, name: &str, update: TableUpdate) -> Result<TableDef> {
        self.send_json(Call::new(Method::PATCH, self.table_path(name)?).json(&update)?).await
    }

    async fn delete_table(&self, name: &str) -> Result<()> {
        let _: Done = self.send_json(Call::new(Method::DELETE, self.table_path(name)?)).await?;
        Ok(())
    }
}

#[async_trait]
impl RecordReader for RemoteDatabase {
    async fn get_record(&self, table: &str, id: &str, options: GetOptions) -> Result<Record> {
        let mut call = self.record_call(Method::GET, table, id)?;
        if let Some(rev) = options.rev {
            call = call.query("rev", rev);
        }
        if options.conflicts {
            call = call.query("conflicts", true);
        }
        if options.revs {
            call = call.query("revs", true);
        }
        self.send_json(call).await
    }

    async fn list_records(&self, table: &str, options: ListOptions) -> Result<RecordPage> {
        let mut call = Call::get(format!("{}/records", self.table_path(table)?)).query("limit", options.limit);
        if let Some(after) = options.after {
            call = call.query("after", after);
        }
        if options.include_deleted {
            call = call.query("include_deleted", true);
        }
        self.send_json(call).await
    }
}

#[async_trait]
impl RecordWriter for RemoteDatabase {
    async fn put_record(&self, table: &str, put: PutRecord) -> Result<WriteResult> {
        let body = RecordBody { attributes: &put.attributes, rev: put.rev.as_ref(), resolves: &put.resolves };
        let call = match &put.id {
            // Idempotent by the write rules: a repeated write returns the revision it made.
            Some(id) => self.record_call(Method::PUT, table, id)?,
            // A generated id is new on every attempt: not repeated.
            None => Call::new(Method::POST, format!("{}/records", self.table_path(table)?)),
        };
        self.send_json(call.json(&body)?).await
    }

    async fn delete_record(&self, table: &str, id: &str, rev: Option<RevId>) -> Result<WriteResult> {
        let mut call = self.record_call(Method::DELETE, table, id)?;
        if let Some(rev) = rev {
            call = call.query("rev", rev);
        }
        self.send_json(call).await
    }

    async fn write_batch(&self, ops: Vec<WriteOp>) -> Result<BatchResult> {
        let path = format!("{}/bulk", self.path);
        let what = format!("POST {}{path}", self.transport.base());
        let call = Call::new(Method::POST, path).json(&BulkRequest { ops: &ops })?;
        let response: BulkResponse = self.send_json(call).await?;
        if response.results.len() != ops.len() {
            return Err(Error::internal(format!(
                "{what}: {} results for {} operations",
                response.results.len(),
                ops.len()
            )));
        }
        Ok(response.results.into_iter().map(|item| batch_item(item, &what)).collect())
    }
}

#[async_trait]
impl ChangeReader for RemoteDatabase {
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage> {
        let mut call =
            Call::get(format!("{}/changes", self.path)).query("since", request.since).query("limit", request.limit);
        if let Some(tables) = &request.tables {
            // Names are joined by commas; a name the list cannot carry is an invalid name anyway.
            for t in tables {
                if t.is_empty() || t.contains(',') {
                    names::validate_any_table_name(t)?;
                }
            }
            call = call.query("tables", tables.join(","));
        }
        // Outpost's page is read the fast way (`outpost_api::changes_from_json`).
        Ok(self.transport.json_sized_by(call, outpost_api::changes_from_json).await?.0)
    }

    async fn wait_for_changes(&self, since: u64, timeout: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // Round up, so a short wait is not sent as "no wait".
            let ms = (left.as_micros().div_ceil(1000) as u64).min(MAX_WAIT_MS);
            let call = Call::get(format!("{}/wait", self.path))
                .query("since", since)
                .query("timeout", ms)
                .timeout(Duration::from_millis(ms) + self.transport.config().long_poll_margin);
            let seq = self.send_json::<UpdateSeq>(call).await?.update_seq;
            if seq > since || ms < MAX_WAIT_MS || tokio::time::Instant::now() >= deadline {
                return Ok(seq);
            }
        }
    }
}

/// How long a compaction may take before the client stops waiting for its report (the server
/// finishes it anyway).
const COMPACT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[async_trait]
impl Maintenance for RemoteDatabase {
    async fn compact(&self, request: CompactRequest) -> Result<CompactReport> {
        if let Some(table) = &request.table {
            names::validate_table_name(table)?;
        }
        // Safe to repeat: what a compaction drops is decided afresh from the trees each time.
        let call = Call::new(Method::POST, format!("{}/compact", self.path))
            .json(&request)?
            .idempotent()
            .timeout(COMPACT_TIMEOUT);
        self.send_json(call).await
    }
}

#[async_trait]
impl LocalDocs for RemoteDatabase {
    async fn get_local(&self, table: &str, id: &str) -> Result<LocalDoc> {
        self.send_json(Call::get(self.local_path(table, id)?)).await
    }

    async fn put_local(
        &self,
        table: &str,
        id: &str,
        rev: Option<u64>,
        body: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<u64> {
        let path = self.local_path(table, id)?;
        // Not repeated: a second write after a lost answer would find the revision moved on.
        let call = match (body, rev) {
            (Some(body), rev) => Call::new(Method::PUT, path).json(&LocalPut { rev, body })?.once(),
            (None, Some(rev)) => Call::new(Method::DELETE, path).query("rev", rev).once(),
            (None, None) => return Err(Error::invalid("deleting a local document names its revision")),
        };
        let done: LocalRev = self.send_json(call).await?;
        Ok(done.rev)
    }
}

#[async_trait]
impl InfoReader for RemoteDatabase {
    async fn info(&self) -> Result<DbInfo> {
        self.send_json(Call::get(self.path.clone())).await
    }
}

#[async_trait]
impl ReplicaSource for RemoteDatabase {
    async fn get_revisions(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionData>> {
        Ok(self.get_revisions_sized(wanted).await?.0)
    }

    async fn get_revisions_sized(&self, wanted: Vec<RecordRevs>) -> Result<(Vec<RevisionData>, u64)> {
        let call = Call::new(Method::POST, format!("{}/revs/get", self.path)).json(&wanted)?.idempotent();
        // Outpost's answer is read the fast way: each body's canonical bytes made where it stands.
        self.transport.json_sized_by(call, outpost_api::revisions_from_json).await
    }

    async fn chain_hash_at(&self, seq: u64) -> Result<ChainHash> {
        Ok(self.send_json::<ChainAt>(Call::get(format!("{}/chain/{seq}", self.path))).await?.chain)
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        let mut call = Call::get(format!("{}/knowledge", self.path));
        if let Some(upto) = upto {
            call = call.query("upto", upto);
        }
        self.send_json(call).await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<RevisionEvent>> {
        let call = Call::get(format!("{}/events", self.path)).query("after", after).query("limit", limit);
        self.send_json(call).await
    }
}

#[async_trait]
impl ReplicaTarget for RemoteDatabase {
    async fn revs_diff(&self, have: Vec<RecordRevs>) -> Result<Vec<RecordRevs>> {
        let call = Call::new(Method::POST, format!("{}/revs-diff", self.path)).json(&have)?.idempotent();
        self.send_json(call).await
    }

    async fn put_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
    ) -> Result<PutRevisionsResult> {
        let body = PutRevisionsRequest { revisions: &revisions, resume: resume.as_ref(), knowledge: None };
        // Known revisions are no-ops and the resume point is set, not added: safe to repeat.
        let call = Call::new(Method::POST, format!("{}/revs/put", self.path)).json(&body)?.idempotent();
        self.send_json(call).await
    }

    async fn put_revisions_with_knowledge(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: KnowledgeUpdate,
    ) -> Result<PutRevisionsResult> {
        let body = PutRevisionsRequest { revisions: &revisions, resume: None, knowledge: Some(&knowledge) };
        // Known revisions are no-ops and a knowledge row already recorded is kept: safe to repeat.
        let call = Call::new(Method::POST, format!("{}/revs/put", self.path)).json(&body)?.idempotent();
        self.send_json(call).await
    }

    async fn record_knowledge(&self, update: KnowledgeUpdate) -> Result<()> {
        let call = Call::new(Method::POST, format!("{}/knowledge", self.path)).json(&update)?.idempotent();
        let _: Done = self.send_json(call).await?;
        Ok(())
    }

    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        let call = Call::get(format!("{}/resume/{}", self.path, segment(&source.to_string())));
        // `null` when no resume point is stored; a 404 means the database is missing.
        self.send_json(call).await
    }
}
