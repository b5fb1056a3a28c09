//! Extractors that turn every way a request can be malformed into our error JSON (400 invalid_input,
//! 413 too_large), and the path and query parameters shared by the routes. A database name is
//! validated here, before anything touches storage.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use outpost_api::{names, Database, Error, ErrorKind, RevId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use utoipa::IntoParams;

use crate::access::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn rejection(status: StatusCode, text: String) -> ApiError {
    ApiError(Error::new(ErrorKind::from_http_status(status.as_u16()), text))
}

/// Parse a JSON request body; an empty body, invalid JSON or JSON of the wrong shape is invalid_input.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError(Error::invalid("the request body is empty; this route expects JSON")));
    }
    outpost_api::from_json_bytes(bytes).map_err(|e| ApiError(Error::invalid(format!("invalid JSON body: {e}"))))
}

/// A request body as read, holding its room in the upload budget until dropped (so the room covers
/// parsing too, when the parsed form is built beside the bytes).
struct ReadBody {
    bytes: Bytes,
    _room: OwnedSemaphorePermit,
}

/// The length a request's head declares for its body (`Content-Length`), if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
}

/// Room in the upload budget for what a request's body may be: its declared length, else the most a
/// body may be (`max_request_bytes`), held while it is read and parsed.
pub(crate) async fn upload_room(headers: &HeaderMap, state: &AppState) -> ApiResult<OwnedSemaphorePermit> {
    let most = state.limits.max_request_bytes;
    Ok(state.budgets.upload(declared_length(headers).unwrap_or(most).min(most)).await?)
}

async fn read_body(request: Request, state: &AppState) -> ApiResult<ReadBody> {
    let room = upload_room(request.headers(), state).await?;
    let bytes = Bytes::from_request(request, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(Error::too_large(format!(
                "the request body exceeds the limit of {} bytes",
                state.limits.max_request_bytes
            )))
        } else {
            rejection(r.status(), r.body_text())
        }
    })?;
    Ok(ReadBody { bytes, _room: room })
}

/// Bodies up to this size are parsed where they are read; larger ones on the blocking pool, so that
/// parsing megabytes never holds an async worker.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

async fn parse_body<T: DeserializeOwned + Send + 'static>(body: ReadBody) -> ApiResult<T> {
    parse_sized(body.bytes.len(), move || parse_json(&body.bytes)).await
}

/// Parse a request body of `len` bytes with `parse`: where it was read when small, on the blocking
/// pool when large.
pub(crate) async fn parse_sized<T: Send + 'static>(
    len: usize,
    parse: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    if len <= INLINE_PARSE_BYTES {
        return parse();
    }
    match tokio::task::spawn_blocking(parse).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ApiError(Error::unavailable("the server is shutting down"))),
    }
}

/// A JSON request body of type `T` (no content-type check: the route says what it expects).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> ApiResult<Self> {
        parse_body(read_body(request, state).await?).await.map(JsonBody)
    }
}

/// A JSON request body that may be left out (`None` for an empty body).
pub struct MaybeJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for MaybeJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> ApiResult<Self> {
        let body = read_body(request, state).await?;
        if body.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeJsonBody(None));
        }
        parse_body(body).await.map(|t| MaybeJsonBody(Some(t)))
    }
}

/// The raw request body, limited like the others, for routes that choose their parser at run time
/// (the attributes' format): [`RawBody::parse`] holds its room in the upload budget until parsed.
pub struct RawBody(ReadBody);

impl RawBody {
    /// Parse the body with `parse`, off the async workers when it is large, holding its room in the
    /// upload budget until the parsed form is built.
    pub async fn parse<T: Send + 'static>(
        self,
        parse: impl FnOnce(&[u8]) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let body = self.0;
        parse_sized(body.bytes.len(), move || parse(&body.bytes)).await
    }
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> ApiResult<Self> {
        read_body(request, state).await.map(RawBody)
    }
}

/// Query parameters; a bad one is invalid_input naming it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| rejection(r.status(), r.body_text()))
    }
}

/// Path parameters (percent-decoded); a bad one is invalid_input.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|r| rejection(r.status(), r.body_text()))
    }
}

/// `{db}` of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DbPath {
    /// The database name, `^[a-z][a-z0-9_-]{0,62}$`.
    pub db: String,
}

/// `{table}` of the path (`{db}` is the database extractor's).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TablePath {
    /// The table name, `^[a-z][a-z0-9_]{0,62}$`.
    pub table: String,
}

/// `{table}` and `{id}` of the path (`{db}` is the database extractor's).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RecordPath {
    /// The table name.
    pub table: String,
    /// The record id, percent-encoded (1-256 bytes of UTF-8 without control characters).
    pub id: String,
}

/// A validated database name from the path; nothing has touched storage yet. Private: a handler gets
/// a database name only through an extractor that checked the caller's role on it.
struct DbName(String);

impl<S: Send + Sync> FromRequestParts<S> for DbName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let PathParams(DbPath { db }) = PathParams::from_request_parts(parts, state).await?;
        names::validate_db_name(&db)?;
        Ok(DbName(db))
    }
}

/// Who makes the request, as [`crate::access::guard`] established it. A request that reached a
/// handler without one (a router built without the guard) is refused, never let through.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError(Error::unauthorized("this server needs an access token: send Authorization: Bearer TOKEN"))
        })
    }
}

/// The database name of the path, once the caller is known to hold `need` on it (404 for a database
/// the caller has no role on, 403 for a weaker role).
async fn authorized(parts: &mut Parts, state: &AppState, need: Role) -> ApiResult<String> {
    let DbName(name) = DbName::from_request_parts(parts, state).await?;
    Caller::from_request_parts(parts, state).await?.require(&name, need)?;
    Ok(name)
}

/// An extractor of the database named by the path, opened once the caller holds `$role` on it: a
/// route's access rule is the type of its database argument (SPEC §14).
macro_rules! database_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Arc<dyn Database>);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
                let name = authorized(parts, state, $role).await?;
                Ok($name(state.dbs.open(&name).await?))
            }
        }
    };
}

database_extractor!(
    /// The database of the path, for a caller with `read` on it.
    ReadDb,
    Role::Read
);
database_extractor!(
    /// The database of the path, for a caller with `write` on it.
    WriteDb,
    Role::Write
);
database_extractor!(
    /// The database of the path, for a caller with `admin` on it.
    AdminDb,
    Role::Admin
);

/// The database name of the path (not opened: it may not exist yet), for a caller with `admin` on
/// it: creating and deleting databases.
pub struct AdminDbName(pub String);

impl FromRequestParts<AppState> for AdminDbName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        authorized(parts, state, Role::Admin).await.map(AdminDbName)
    }
}

/// How record attributes travel: the typed wire form, or plain JSON.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Format {
    /// `{"qty": {"int": "4"}}` (PROTOCOL.md §1).
    #[default]
    Typed,
    /// `{"qty": 4}`.
    Plain,
}

/// `?format=` of the record routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `plain` for attributes in plain JSON (also `Accept: application/json; format=plain`); `typed`
    /// (the default) for the typed wire form.
    pub format: Option<String>,
}

fn accepts_plain(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/json")
            && parts.filter_map(|p| p.split_once('=')).any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("format") && v.trim().trim_matches('"').eq_ignore_ascii_case("plain")
            })
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let Query(FormatQuery { format }) = Query::from_request_parts(parts, state).await?;
        match format.as_deref() {
            Some("plain") => Ok(Format::Plain),
            Some("typed") => Ok(Format::Typed),
            Some(other) => Err(ApiError(Error::invalid(format!("unknown format {other:?}: expected plain or typed")))),
            None if accepts_plain(&parts.headers) => Ok(Format::Plain),
            None => Ok(Format::Typed),
        }
    }
}

/// The revision named by an `If-Match: "<rev>"` header, if any.
pub struct IfMatch(pub Option<RevId>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else { return Ok(IfMatch(None)) };
        let text = value.to_str().map_err(|_| ApiError(Error::invalid("If-Match is not ASCII")))?.trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        let rev = text.trim_matches('"').parse::<RevId>().map_err(|e| ApiError(e.context("If-Match")))?;
        Ok(IfMatch(Some(rev)))
    }
}

impl IfMatch {
    /// The revision a write names: the header's and the body's or query's, which must agree.
    pub fn merge(self, other: Option<RevId>) -> ApiResult<Option<RevId>> {
        match (self.0, other) {
            (Some(a), Some(b)) if a != b => {
                Err(ApiError(Error::invalid(format!("If-Match names revision {a} but the request names {b}"))))
            }
            (a, b) => Ok(a.or(b)),
        }
    }
}

/// A `limit` parameter checked against the contract's 1–10000.
pub fn page_limit(limit: Option<u64>) -> ApiResult<usize> {
    Ok(outpost_api::check_page(limit.unwrap_or(outpost_api::DEFAULT_PAGE as u64), "limit")?)
}
