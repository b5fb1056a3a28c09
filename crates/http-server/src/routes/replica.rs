//! Replication: revs-diff, revisions out and in, chain hashes, knowledge and resume points.

use axum::Json;
use outpost_api::{
    ChainHash, Error, KnowledgeRow, KnowledgeUpdate, PutRevisionsResult, RecordRevs, ResumePoint, RevisionData,
    RevisionEvent,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::responses::{InvalidBody, OfDatabase};
use super::{OkResponse, OK};
use crate::error::ApiResult;
use crate::extract::{DbPath, JsonBody, PathParams, Query, ReadDb, WriteDb};

/// `POST /dbs/{db}/revs/put`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRevisionsRequest {
    /// Replicated revisions; each body is re-hashed and must match its rev id.
    pub revisions: Vec<RevisionData>,
    /// Where the replication stands, committed with the revisions.
    #[serde(default)]
    pub resume: Option<ResumePoint>,
    /// What the revisions prove (a verified quicksync batch), recorded with them; not together with
    /// `resume`.
    #[serde(default)]
    pub knowledge: Option<KnowledgeUpdate>,
}

/// `GET /dbs/{db}/events` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with seq above this (default 0).
    #[serde(default)]
    pub after: u64,
    /// At most this many (1..=10000, default 1000).
    pub limit: Option<usize>,
}

/// `{seq}` of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SeqPath {
    /// A seq (0 is the genesis hash).
    pub seq: u64,
}

/// `{source_uuid}` of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SourcePath {
    /// The source epoch's uuid.
    #[param(value_type = String, format = "uuid")]
    pub source_uuid: uuid::Uuid,
}

/// `GET /dbs/{db}/knowledge` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KnowledgeQuery {
    /// Only rows with local seq at or below this.
    pub upto: Option<u64>,
}

/// The chain hash after a seq.
#[derive(Serialize, ToSchema)]
pub struct ChainAt {
    /// The seq.
    pub seq: u64,
    /// The chain hash after revision event `seq`.
    pub chain: ChainHash,
}

/// For each record, the named revisions this database does not hold.
#[utoipa::path(
    post, path = "/dbs/{db}/revs-diff", tag = "replication", operation_id = "revs_diff", params(DbPath),
    request_body = Vec<RecordRevs>,
    responses((status = 200, description = "The missing revisions", body = Vec<RecordRevs>), InvalidBody, OfDatabase)
)]
pub async fn revs_diff(
    ReadDb(db): ReadDb,
    JsonBody(have): JsonBody<Vec<RecordRevs>>,
) -> ApiResult<Json<Vec<RecordRevs>>> {
    Ok(Json(db.revs_diff(have).await?))
}

/// The named revisions with their bodies and ancestry (unknown ones left out).
#[utoipa::path(
    post, path = "/dbs/{db}/revs/get", tag = "replication", operation_id = "get_revisions", params(DbPath),
    request_body = Vec<RecordRevs>,
    responses(
        (status = 200, body = Vec<RevisionData>),
        InvalidBody,
        OfDatabase,
    )
)]
pub async fn get_revisions(
    ReadDb(db): ReadDb,
    JsonBody(wanted): JsonBody<Vec<RecordRevs>>,
) -> ApiResult<axum::response::Response> {
    // The bodies as stored, copied into the answer without being parsed and encoded again.
    let revisions = db.get_revisions_json(wanted).await?;
    Ok(crate::stream::json_array("[".into(), revisions, "]"))
}

/// Store replicated revisions (and the resume point, or the knowledge they prove) in one transaction.
#[utoipa::path(
    post, path = "/dbs/{db}/revs/put", tag = "replication", operation_id = "put_revisions", params(DbPath),
    request_body = PutRevisionsRequest,
    responses(
        (status = 200, body = PutRevisionsResult),
        InvalidBody,
        OfDatabase,
        (status = 413, description = "Too many revisions, or body over the limit", body = Error),
        (status = 422, description = "A body does not hash to its rev id; nothing was stored", body = Error),
    )
)]
pub async fn put_revisions(
    WriteDb(db): WriteDb,
    JsonBody(request): JsonBody<PutRevisionsRequest>,
) -> ApiResult<Json<PutRevisionsResult>> {
    let result = match (request.resume, request.knowledge) {
        (resume, None) => db.put_revisions(request.revisions, resume).await?,
        (None, Some(knowledge)) => db.put_revisions_with_knowledge(request.revisions, knowledge).await?,
        (Some(_), Some(_)) => return Err(Error::invalid("give either a resume point or knowledge, not both").into()),
    };
    Ok(Json(result))
}

/// Revision events after a seq, in seq order, each revision with its body and ancestry (quicksync).
#[utoipa::path(
    get, path = "/dbs/{db}/events", tag = "replication", operation_id = "events", params(DbPath, EventsQuery),
    responses(
        (status = 200, body = Vec<RevisionEvent>),
        (status = 400, description = "Bad `after` or `limit`", body = Error),
        OfDatabase,
    )
)]
pub async fn events(ReadDb(db): ReadDb, Query(query): Query<EventsQuery>) -> ApiResult<axum::response::Response> {
    let events = db.events(query.after, query.limit.unwrap_or(1000)).await?;
    Ok(crate::stream::json_array("[".into(), events, "]"))
}

/// The chain hash after revision event `seq`.
#[utoipa::path(
    get, path = "/dbs/{db}/chain/{seq}", tag = "replication", operation_id = "chain_hash_at", params(DbPath, SeqPath),
    responses(
        (status = 200, body = ChainAt),
        (status = 400, description = "`seq` is not an unsigned integer", body = Error),
        (status = 404, description = "No such database, or `seq` beyond update_seq", body = Error),
    )
)]
pub async fn chain(ReadDb(db): ReadDb, PathParams(path): PathParams<SeqPath>) -> ApiResult<Json<ChainAt>> {
    Ok(Json(ChainAt { seq: path.seq, chain: db.chain_hash_at(path.seq).await? }))
}

/// Knowledge rows, those with local seq ≤ `upto` when given.
#[utoipa::path(
    get, path = "/dbs/{db}/knowledge", tag = "replication", operation_id = "knowledge", params(DbPath, KnowledgeQuery),
    responses(
        (status = 200, body = Vec<KnowledgeRow>),
        (status = 400, description = "`upto` is not an unsigned integer", body = Error),
        OfDatabase,
    )
)]
pub async fn knowledge(ReadDb(db): ReadDb, Query(query): Query<KnowledgeQuery>) -> ApiResult<Json<Vec<KnowledgeRow>>> {
    Ok(Json(db.knowledge(query.upto).await?))
}

/// Record what a drained replication pass learned.
#[utoipa::path(
    post, path = "/dbs/{db}/knowledge", tag = "replication", operation_id = "record_knowledge", params(DbPath),
    request_body = KnowledgeUpdate,
    responses(
        (status = 200, body = OkResponse),
        InvalidBody,
        OfDatabase,
    )
)]
pub async fn record_knowledge(
    WriteDb(db): WriteDb,
    JsonBody(update): JsonBody<KnowledgeUpdate>,
) -> ApiResult<Json<OkResponse>> {
    db.record_knowledge(update).await?;
    Ok(Json(OK))
}

/// The resume point stored for a source epoch, `null` when none is.
#[utoipa::path(
    get, path = "/dbs/{db}/resume/{source_uuid}", tag = "replication", operation_id = "resume_point",
    params(DbPath, SourcePath),
    responses(
        (status = 200, body = Option<ResumePoint>, description = "The resume point, or null"),
        (status = 400, description = "`source_uuid` is not a uuid", body = Error),
        OfDatabase,
    )
)]
pub async fn resume_point(
    ReadDb(db): ReadDb,
    PathParams(path): PathParams<SourcePath>,
) -> ApiResult<Json<Option<ResumePoint>>> {
    Ok(Json(db.resume_point(path.source_uuid).await?))
}
