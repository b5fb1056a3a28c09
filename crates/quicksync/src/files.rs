//! Where published files come from: a directory on this machine, or an HTTP(S) server (the Outpost
//! server's `/dbs/{db}/quicksync/`, any web server, an object store). Either way a fetched file is
//! a local path whose size and blake3 match its manifest row; HTTP downloads go to a cache
//! directory and resume with range requests after an interruption.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use outpost_api::{Error, ErrorKind, Result, RetryPolicy};
use reqwest::StatusCode;

use crate::manifest::{Row, MANIFEST};

/// A place published files are read from.
#[async_trait]
pub trait Files: Send + Sync {
    /// Where the files are, for messages.
    fn location(&self) -> &str;
    /// The text of `manifest.csv`.
    async fn manifest(&self) -> Result<String>;
    /// A local path holding the file `row` names, its size and blake3 checked against the row.
    /// `progress` is told of bytes as they arrive.
    async fn fetch(&self, row: &Row, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<PathBuf>;
}

/// The files at `location`: an `http://` or `https://` URL of the directory, or a directory path.
/// HTTP downloads are kept in `cache` (created when needed).
pub fn open(location: &str, cache: &Path) -> Result<Box<dyn Files>> {
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::internal(format!("building the HTTP client: {e}")))?;
    open_with(location, cache, client)
}

/// The largest manifest read from a server (a row is ~250 bytes: room for 250,000 files).
const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// How long a download may stall before it is retried (it resumes where it stopped).
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// [`open`], downloading with `client` (which carries the credentials and trusted CAs for the
/// server; it should not follow redirects and should time out stalled reads, not whole downloads).
pub fn open_with(location: &str, cache: &Path, client: reqwest::Client) -> Result<Box<dyn Files>> {
    if location.starts_with("http://") || location.starts_with("https://") {
        let authority = location.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if authority.contains('@') {
            return Err(Error::invalid(
                "credentials do not belong in a quicksync URL, where `ps` and logs show them; give the token in \
                 OUTPOST_TOKEN or a token file",
            ));
        }
        let base = if location.ends_with('/') { location.to_owned() } else { format!("{location}/") };
        return Ok(Box::new(HttpFiles { base, client, cache: cache.to_owned(), retry: RetryPolicy::default() }));
    }
    if location.contains("://") {
        return Err(Error::invalid(format!(
            "{location:?}: quicksync files are read from http(s):// URLs or directories"
        )));
    }
    let dir = PathBuf::from(location);
    if !dir.is_dir() {
        return Err(Error::not_found(format!("{location}: no such directory")));
    }
    Ok(Box::new(DirFiles { location: location.to_owned(), dir }))
}

/// Check a file's size and blake3 against its row; reports bytes hashed to `progress`.
pub fn verify_file(path: &Path, row: &Row, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<()> {
    let io = |e: std::io::Error| Error::internal(format!("reading {}: {e}", path.display()));
    let mut file = fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(format!("{} is listed in the manifest but missing", row.file)),
        _ => io(e),
    })?;
    let size = file.metadata().map_err(io)?.len();
    if size != row.bytes {
        return Err(Error::corrupt(format!(
            "{}: {size} bytes where the manifest says {} (truncated or replaced)",
            row.file, row.bytes
        )));
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress(n as u64);
    }
    let actual = hasher.finalize().to_hex();
    if actual.as_str() != row.blake3 {
        return Err(Error::corrupt(format!(
            "{}: blake3 {actual} does not match the manifest's {}: the file is damaged, or the manifest lies",
            row.file, row.blake3
        )));
    }
    Ok(())
}

/// Files in a local directory, read in place.
struct DirFiles {
    location: String,
    dir: PathBuf,
}

#[async_trait]
impl Files for DirFiles {
    fn location(&self) -> &str {
        &self.location
    }

    async fn manifest(&self) -> Result<String> {
        let path = self.dir.join(MANIFEST);
        fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::not_found(format!("{}: no {MANIFEST} (nothing published?)", self.location))
            }
            _ => Error::internal(format!("reading {}: {e}", path.display())),
        })
    }

    async fn fetch(&self, row: &Row, _progress: &(dyn Fn(u64) + Send + Sync)) -> Result<PathBuf> {
        let path = self.dir.join(&row.file);
        verify_file(&path, row, &|_| {})?;
        Ok(path)
    }
}

/// Files behind an HTTP(S) URL, downloaded into a cache directory.
struct HttpFiles {
    base: String,
    client: reqwest::Client,
    cache: PathBuf,
    retry: RetryPolicy,
}

/// Whether an error is worth another attempt (the connection, or the server for a while).
fn transient(e: &Error) -> bool {
    e.kind == ErrorKind::Unavailable
}

fn network(url: &str, e: reqwest::Error) -> Error {
    Error::unavailable(format!("{url}: {e}"))
}

fn status_error(url: &str, status: StatusCode) -> Error {
    match status {
        StatusCode::NOT_FOUND => {
            Error::not_found(format!("{url}: not found (republished since the manifest was read? run again)"))
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => Error::unavailable(format!("{url}: {s}")),
        StatusCode::UNAUTHORIZED => Error::unauthorized(format!(
            "{url}: the server needs an access token (OUTPOST_TOKEN or --token-file), or does not know this one"
        )),
        StatusCode::FORBIDDEN => Error::forbidden(format!("{url}: the access token may not read this database")),
        s => Error::invalid(format!("{url}: the server answered {s}")),
    }
}

impl HttpFiles {
    /// Run `attempt` until it succeeds, fails for good, or the retry policy gives up.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if transient(&e) && tries + 1 < self.retry.max_attempts => {
                    tracing::warn!("{what}: {e}; retrying");
                    tokio::time::sleep(self.retry.delay(tries, None)).await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Append what the server has of `url` beyond the `have` bytes of `part` (a range request), or
    /// rewrite it whole when the server ignores ranges.
    /// A server sending more than the manifest's `size` bytes is refused there (it could fill the disk).
    async fn download(&self, url: &str, part: &Path, size: u64, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<()> {
        let io = |e: std::io::Error| Error::internal(format!("writing {}: {e}", part.display()));
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().await.map_err(|e| network(url, e))?;
        let mut file = match response.status() {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let from = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if from != Some(have) {
                    return Err(Error::unavailable(format!("{url}: the server resumed at another offset")));
                }
                fs::OpenOptions::new().append(true).open(part).map_err(io)?
            }
            StatusCode::OK => fs::File::create(part).map_err(io)?,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // What is on disk is not a prefix of the file: start over.
                fs::remove_file(part).map_err(io)?;
                return Err(Error::unavailable(format!("{url}: the partial download did not fit; starting over")));
            }
            status => return Err(status_error(url, status)),
        };
        let mut held = file.metadata().map_err(io)?.len();
        while let Some(chunk) = response.chunk().await.map_err(|e| network(url, e))? {
            held += chunk.len() as u64;
            if held > size {
                drop(file);
                let _ = fs::remove_file(part);
                return Err(Error::corrupt(format!("{url}: the server sent more than the manifest's {size} bytes")));
            }
            file.write_all(&chunk).map_err(io)?;
            progress(chunk.len() as u64);
        }
        file.sync_all().map_err(io)
    }
}

#[async_trait]
impl Files for HttpFiles {
    fn location(&self) -> &str {
        &self.base
    }

    async fn manifest(&self) -> Result<String> {
        let url = format!("{}{MANIFEST}", self.base);
        self.retrying("fetching the manifest", || async {
            let mut response = self.client.get(&url).send().await.map_err(|e| network(&url, e))?;
            if !response.status().is_success() {
                return Err(status_error(&url, response.status()));
            }
            let mut text = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| network(&url, e))? {
                if text.len() + chunk.len() > MAX_MANIFEST_BYTES {
                    return Err(Error::corrupt(format!("{url}: the manifest exceeds {MAX_MANIFEST_BYTES} bytes")));
                }
                text.extend_from_slice(&chunk);
            }
            String::from_utf8(text).map_err(|_| Error::corrupt(format!("{url}: the manifest is not UTF-8")))
        })
        .await
    }

    async fn fetch(&self, row: &Row, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<PathBuf> {
        fs::create_dir_all(&self.cache)
            .map_err(|e| Error::internal(format!("creating the cache {}: {e}", self.cache.display())))?;
        let done = self.cache.join(&row.file);
        if done.exists() && verify_file(&done, row, &|_| {}).is_ok() {
            return Ok(done);
        }
        let part = self.cache.join(format!("{}.part", row.file));
        let url = format!("{}{}", self.base, row.file);
        for fresh_start in [false, true] {
            if fresh_start {
                // A resumed download that does not verify may have resumed a stale prefix.
                let _ = fs::remove_file(&part);
            }
            let resumed = fs::metadata(&part).map(|m| m.len()).unwrap_or(0) > 0;
            let complete = || fs::metadata(&part).map(|m| m.len() >= row.bytes).unwrap_or(false);
            if !complete() {
                self.retrying(&format!("downloading {}", row.file), || self.download(&url, &part, row.bytes, progress))
                    .await?;
            }
            match verify_file(&part, row, &|_| {}) {
                Ok(()) => {
                    fs::rename(&part, &done)
                        .map_err(|e| Error::internal(format!("keeping {}: {e}", done.display())))?;
                    return Ok(done);
                }
                Err(e) if resumed && !fresh_start => tracing::warn!("{e}; downloading it again from the start"),
                Err(e) => {
                    let _ = fs::remove_file(&part);
                    return Err(e.context(format!("downloaded from {url}")));
                }
            }
        }
        unreachable!("the second round returns")
    }
}
