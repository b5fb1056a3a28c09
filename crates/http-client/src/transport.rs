//! One HTTP call with its timeout and retries. A [`Transport`] owns the connection pool (one
//! `reqwest::Client`) and is shared by a `RemoteDatabases` and every database it opens.

use std::time::Duration;

use outpost_api::{Error, Result};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::ClientConfig;
use crate::error::{bad_body, from_response, from_transport};

/// Responses up to this size are parsed where they were read; larger ones on the blocking pool.
const INLINE_PARSE_BYTES: u64 = 64 * 1024;

/// A request to make: method, path below the server's base URL (segments already encoded), query,
/// JSON body, and whether it may be sent again after it may have reached the server.
pub(crate) struct Call {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    idempotent: bool,
    timeout: Option<Duration>,
}

impl Call {
    /// A call without a body. GET, PUT and DELETE are idempotent by HTTP's rules and ours; POST is not
    /// unless [`Call::idempotent`] says so.
    pub(crate) fn new(method: Method, path: String) -> Self {
        let idempotent = method != Method::POST && method != Method::PATCH;
        Call { method, path, query: Vec::new(), body: None, idempotent, timeout: None }
    }

    /// A GET.
    pub(crate) fn get(path: String) -> Self {
        Self::new(Method::GET, path)
    }

    /// Add a JSON body.
    pub(crate) fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::invalid(format!("cannot encode the request: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }

    /// Add a query parameter.
    pub(crate) fn query(mut self, name: &'static str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }

    /// Mark the call as safe to repeat (a POST whose effect does not depend on how often it runs).
    pub(crate) fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Mark the call as not to be repeated once it may have reached the server.
    pub(crate) fn once(mut self) -> Self {
        self.idempotent = false;
        self
    }

    /// Use this request timeout instead of the configured one.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The shared client: connection pool, base URL, configuration.
#[derive(Debug)]
pub(crate) struct Transport {
    client: reqwest::Client,
    base: String,
    config: ClientConfig,
}

/// How one attempt ended.
enum Attempt {
    /// A 2xx with its body.
    Done(Vec<u8>),
    /// A failure that another attempt may cure, with the server's `Retry-After` if any.
    Transient { error: Error, retry_after: Option<Duration>, sent: bool },
    /// A failure that another attempt would repeat.
    Final(Error),
}

impl Transport {
    /// A transport to the server at `base` (already checked by `paths::base_url`).
    pub(crate) fn new(base: String, config: ClientConfig) -> Result<Self> {
        let client = config.http_client()?;
        Ok(Transport { client, base, config })
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The configuration in force.
    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Make the call and parse its 2xx body as `T`.
    pub(crate) async fn json<T: DeserializeOwned + Send + 'static>(&self, call: Call) -> Result<T> {
        Ok(self.json_sized(call).await?.0)
    }

    /// [`Transport::json`], with the length of the body that was parsed.
    pub(crate) async fn json_sized<T: DeserializeOwned + Send + 'static>(&self, call: Call) -> Result<(T, u64)> {
        self.json_sized_by(call, |text| serde_json::from_str(text)).await
    }

    /// [`Transport::json_sized`], the body's text read by `read`: a faster reader of one type's JSON
    /// that takes what `serde` takes, as the same value, and refuses what it refuses (a body that
    /// is not UTF-8 is refused by `serde`, which says where).
    pub(crate) async fn json_sized_by<T: DeserializeOwned + Send + 'static>(
        &self,
        call: Call,
        read: fn(&str) -> serde_json::Result<T>,
    ) -> Result<(T, u64)> {
        let what = format!("{} {}{}", call.method, self.base, call.path);
        let body = self.send(call).await?;
        let len = body.len() as u64;
        let parse = move || outpost_api::from_json_bytes_by(&body, read).map_err(|e| bad_body(&e, &what));
        // A page of revisions is a few hundred kilobytes, tens of milliseconds to parse: on the
        // blocking pool, so that the async worker — in a server running a replication job, one that
        // serves its requests — goes on with other I/O meanwhile.
        if len <= INLINE_PARSE_BYTES {
            return Ok((parse()?, len));
        }
        match tokio::task::spawn_blocking(parse).await {
            Ok(value) => Ok((value?, len)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::unavailable("the runtime is shutting down")),
        }
    }

    /// Make the call, retrying as the policy allows; the 2xx body, or the error.
    pub(crate) async fn send(&self, call: Call) -> Result<Vec<u8>> {
        let url = self.url(&call)?;
        let what = format!("{} {url}", call.method);
        let mut builder = self
            .client
            .request(call.method.clone(), url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .timeout(call.timeout.unwrap_or(self.config.request_timeout));
        if let Some(body) = call.body {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        }
        let request = builder.build().map_err(|e| Error::invalid(format!("{what}: cannot build the request: {e}")))?;
        let policy = self.config.retry;
        let attempts = policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            // The body is in memory, so the request can always be cloned.
            let this = request.try_clone().expect("a request with an in-memory body can be cloned");
            let (error, retry_after, sent) = match self.attempt(this, &what).await {
                Attempt::Done(body) => return Ok(body),
                Attempt::Final(error) => return Err(error),
                Attempt::Transient { error, retry_after, sent } => (error, retry_after, sent),
            };
            // A request that never reached the server may always be sent again.
            let repeatable = call.idempotent || !sent;
            if !repeatable || attempt >= attempts {
                return Err(if attempt > 1 { gave_up(error, attempt) } else { error });
            }
            let delay = policy.delay(attempt, retry_after);
            tracing::debug!(%error, attempt, ?delay, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The full URL of a call.
    fn url(&self, call: &Call) -> Result<Url> {
        let text = format!("{}{}", self.base, call.path);
        let mut url = Url::parse(&text).map_err(|e| Error::invalid(format!("invalid request URL {text:?}: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// One attempt: send, read the whole response, classify it.
    async fn attempt(&self, request: reqwest::Request, what: &str) -> Attempt {
        let mut response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Transient { error: from_transport(&e, what), retry_after: None, sent: !e.is_connect() }
            }
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        let response_headers = response.headers().clone();
        let cap = self.config.max_response_bytes;
        let too_large = || {
            Attempt::Final(Error::too_large(format!("{what}: the response exceeds the client's limit of {cap} bytes")))
        };
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return too_large();
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > cap => return too_large(),
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Attempt::Transient { error: from_transport(&e, what), retry_after: None, sent: true },
            }
        }
        if status.is_success() {
            return Attempt::Done(body);
        }
        if status.is_redirection() {
            let to = response_location(&response_headers);
            return Attempt::Final(Error::invalid(format!(
                "{what}: the server redirects (HTTP {status}{to}); redirects are not followed, so that a token \
                 never travels to another address: use the final URL"
            )));
        }
        let error = from_response(status.as_u16(), &body, what);
        if matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT) {
            Attempt::Transient { error, retry_after, sent: true }
        } else {
            Attempt::Final(error)
        }
    }
}

/// The last attempt's error, saying how many were made.
fn gave_up(mut error: Error, attempts: u32) -> Error {
    error.message = format!("{} (gave up after {attempts} attempts)", error.message);
    error
}

/// ` to <Location>` of a redirect, for its message.
fn response_location(headers: &reqwest::header::HeaderMap) -> String {
    headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(|l| format!(" to {l}")).unwrap_or_default()
}

/// A `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let text = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}
