//! Quicksync files (SPEC §9): `GET|HEAD /dbs/{db}/quicksync/manifest.csv` and
//! `/dbs/{db}/quicksync/{file}`, the files a publisher wrote into `<root>/<db>/`, served as they are on
//! disk. tower-http's `ServeFile` answers ranges (206, 416, `Content-Range`), `Content-Length`,
//! `Last-Modified` and `If-Modified-Since`, so an interrupted download resumes with `Range: bytes=N-`.
//! This module decides which file may be read and what its answer says; it never writes a file.

use std::io;
use std::path::Path;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_api::Error;
use serde::Deserialize;
use tower_http::services::ServeFile;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::extract::{DbPath, PathParams, ReadDb};
use crate::AppState;

/// The manifest's file name: the one quicksync file that changes (replaced atomically on publishing).
pub const MANIFEST: &str = "manifest.csv";

/// Longest file name served: a single path component on every common file system.
const MAX_FILE_NAME: usize = outpost_quicksync::manifest::MAX_FILE_NAME;

/// The manifest changes with every publication: a cache must ask again each time (it may revalidate
/// with `If-Modified-Since`).
const MANIFEST_CACHE: &str = "no-cache";
/// Snapshot and batch files never change once written (SPEC §9), so caches and CDNs may keep them.
const FILE_CACHE: &str = "public, max-age=31536000, immutable";

/// `{file}` of the path (`{db}` is the [`ReadDb`] extractor's).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FilePath {
    /// A file the manifest lists: `[A-Za-z0-9._-]+`, not starting with `.`, at most 255 bytes (the rule of `outpost_quicksync::manifest::is_file_name`).
    pub file: String,
}

/// The database's quicksync manifest (`kind,db_uuid,start_seq,end_seq,prev_chain,end_chain,file,bytes,blake3`).
#[utoipa::path(
    get, path = "/dbs/{db}/quicksync/manifest.csv", tag = "quicksync", operation_id = "quicksync_manifest",
    params(
        DbPath,
        ("Range" = Option<String>, Header, description = "One range: `bytes=start-end`, `bytes=start-` or `bytes=-suffix`"),
        ("If-Range" = Option<String>, Header, description = "The `Last-Modified` of the part held: serve the range only if it still matches, else the whole file"),
    ),
    responses(
        (status = 200, description = "The manifest (`Cache-Control: no-cache`); also `HEAD`", content_type = "text/csv",
            body = String, headers(("Last-Modified" = String), ("Content-Length" = u64), ("Accept-Ranges" = String))),
        (status = 206, description = "The requested range", content_type = "text/csv", body = String,
            headers(("Content-Range" = String, description = "`bytes start-end/size`"))),
        (status = 304, description = "Not modified since `If-Modified-Since`"),
        (status = 400, description = "Invalid database name", body = Error),
        (status = 404, description = "No such database, or no manifest published for it", body = Error),
        (status = 416, description = "Range not satisfiable (`Content-Range: bytes */size`)", body = Error),
    )
)]
pub async fn manifest(
    State(state): State<AppState>,
    _: ReadDb,
    PathParams(DbPath { db }): PathParams<DbPath>,
    request: Request,
) -> ApiResult<Response> {
    send(&state, &db, MANIFEST, request).await
}

/// A snapshot or delta batch file the manifest lists; immutable, so resumable with `Range: bytes=N-`.
#[utoipa::path(
    get, path = "/dbs/{db}/quicksync/{file}", tag = "quicksync", operation_id = "quicksync_file",
    params(
        DbPath,
        FilePath,
        ("Range" = Option<String>, Header, description = "One range: `bytes=start-end`, `bytes=start-` (how a resumed download asks) or `bytes=-suffix`"),
        ("If-Range" = Option<String>, Header, description = "The `Last-Modified` of the part held: serve the range only if it still matches, else the whole file"),
    ),
    responses(
        (status = 200, description = "The whole file (`Cache-Control: public, max-age=31536000, immutable`); \
            also `HEAD`", content_type = "application/octet-stream",
            headers(("Last-Modified" = String), ("Content-Length" = u64), ("Accept-Ranges" = String))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream",
            headers(("Content-Range" = String, description = "`bytes start-end/size`"))),
        (status = 304, description = "Not modified since `If-Modified-Since`"),
        (status = 400, description = "Invalid database or file name", body = Error),
        (status = 404, description = "No such database, or no such file published for it", body = Error),
        (status = 416, description = "Range not satisfiable (`Content-Range: bytes */size`)", body = Error),
    )
)]
pub async fn file(
    State(state): State<AppState>,
    _: ReadDb,
    PathParams(DbPath { db }): PathParams<DbPath>,
    PathParams(FilePath { file }): PathParams<FilePath>,
    request: Request,
) -> ApiResult<Response> {
    send(&state, &db, &file, request).await
}

/// A file name that names one file directly inside the database's directory: no separators, no `.` or
/// `..`, no hidden files, nothing a file system would read differently.
fn validate_file_name(name: &str) -> ApiResult<()> {
    // The publisher's own rule for the names it writes and a manifest may list.
    if !outpost_quicksync::manifest::is_file_name(name) {
        return Err(ApiError(Error::invalid(format!(
            "invalid quicksync file name {name:?}: expected [A-Za-z0-9._-], 1 to {MAX_FILE_NAME} bytes, not \
             starting with '.'"
        ))));
    }
    Ok(())
}

/// Serve `<root>/<db>/<name>` for `request` (GET or HEAD, with its conditional and range headers).
/// The handlers open the database first (`ReadDb`): an unknown one is 404 even when a directory of its
/// name is still on disk (it was deleted).
async fn send(state: &AppState, db: &str, name: &str, request: Request) -> ApiResult<Response> {
    validate_file_name(name)?;
    let Some(root) = &state.quicksync else {
        return Err(ApiError(Error::not_found(
            "this server serves no quicksync files (outpost serve --quicksync DIR)",
        )));
    };
    let path = root.join(db).join(name);
    let missing = || ApiError(Error::not_found(format!("database {db:?} has no published quicksync file {name:?}")));
    // Only regular files (or links to them): `ServeFile` would open a directory and fail mid-body.
    match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(missing()),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Err(missing()),
        Err(e) => return Err(unreadable(&path, e)),
    }

    let (parts, _) = request.into_parts(); // GET or HEAD: there is no body to keep
    let mut response = open(&path, &parts.method, parts.headers.clone()).await?;
    // RFC 9110 §13.1.5: a Range is honoured only while If-Range's validator matches (else the whole
    // file), so a resumed download never splices two versions of a file. `ServeFile` ignores If-Range;
    // it sends no ETag, so only its exact Last-Modified value matches (that of the file it opened).
    let ranged = matches!(response.status(), StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE);
    if ranged && !if_range_holds(&parts.headers, response.headers()) {
        let mut headers = parts.headers;
        headers.remove(header::RANGE);
        response = open(&path, &parts.method, headers).await?;
    }
    match response.status() {
        // Removed between the check above and the open.
        StatusCode::NOT_FOUND => Err(missing()),
        StatusCode::RANGE_NOT_SATISFIABLE => Ok(unsatisfiable(response)),
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
            let (content_type, cache) = match name {
                MANIFEST => ("text/csv; charset=utf-8", MANIFEST_CACHE),
                _ => ("application/octet-stream", FILE_CACHE),
            };
            // A 304 describes no content, so it carries no content type.
            if response.status() != StatusCode::NOT_MODIFIED {
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            Ok(response)
        }
        // 412 (If-Unmodified-Since): the error middleware gives it the JSON body.
        _ => Ok(response),
    }
}

/// `ServeFile`'s answer for `path`, its body as ours; an I/O failure is an internal error (logged).
async fn open(path: &Path, method: &Method, headers: HeaderMap) -> ApiResult<Response> {
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method.clone();
    *request.headers_mut() = headers;
    let response = ServeFile::new(path).try_call(request).await.map_err(|e| unreadable(path, e))?;
    Ok(response.map(Body::new))
}

fn unreadable(path: &Path, e: io::Error) -> ApiError {
    ApiError(Error::internal(format!("cannot read quicksync file {}: {e}", path.display())))
}

/// Whether an `If-Range` in `request` (if any) names the representation in `response`.
fn if_range_holds(request: &HeaderMap, response: &HeaderMap) -> bool {
    match request.get(header::IF_RANGE) {
        None => true,
        Some(validator) => response.get(header::LAST_MODIFIED).is_some_and(|modified| modified == validator),
    }
}

/// 416 with our error JSON, keeping `ServeFile`'s `Content-Range: bytes */size` (which tells the client
/// the file's size).
fn unsatisfiable(response: Response) -> Response {
    let range = response.headers().get(header::CONTENT_RANGE).cloned();
    let message = "the requested range is not satisfiable: one range (bytes=start-end, start- or -suffix) \
                   that starts inside the file";
    let mut answer = (StatusCode::RANGE_NOT_SATISFIABLE, Json(Error::invalid(message))).into_response();
    if let Some(range) = range {
        answer.headers_mut().insert(header::CONTENT_RANGE, range);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_the_directory() {
        for good in ["manifest.csv", "snapshot-000001-000500.oqs", "delta_501_600.zst", "a", "a..b", "A-9"] {
            assert!(validate_file_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_FILE_NAME + 1);
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a\\b", "a b", "a\0b", "é.csv", "a%2Fb", long.as_str()] {
            let error = validate_file_name(bad).expect_err(bad).0;
            assert_eq!(error.kind, outpost_api::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(validate_file_name(&"a".repeat(MAX_FILE_NAME)).is_ok());
    }
}
