//! How the client talks to a server: credentials and trust, timeouts, response size cap and the retry
//! policy (SPEC §7 faults, §14).

use std::path::PathBuf;
use std::time::Duration;

pub use outpost_api::RetryPolicy;
use outpost_api::{Error, Result};

/// An access token as the client holds it: sent as `Authorization: Bearer …` (marked sensitive, so
/// it stays out of logs) and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// A token from its secret; InvalidInput for an empty one or one that cannot travel in a header.
    pub fn new(secret: impl Into<String>) -> Result<Self> {
        let secret = secret.into().trim().to_owned();
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid("the access token is empty or has characters a token cannot have"));
        }
        Ok(AccessToken(secret))
    }

    /// A token read from `path` (surrounding whitespace, such as a final newline, is dropped).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read the token file {}: {e}", path.display())))?;
        Self::new(text).map_err(|e| e.context(format!("token file {}", path.display())))
    }

    /// The secret, for the `Authorization` header.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Settings shared by a [`RemoteDatabases`](crate::RemoteDatabases) and every database it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for one request, from sending it to the end of its response body.
    pub request_timeout: Duration,
    /// Longest wait for a TCP (and TLS) connection to be established.
    pub connect_timeout: Duration,
    /// Longest pause between two reads of a response, when set. Left unset for API calls, whose
    /// long-polls are silent until they answer (`request_timeout` bounds them); set for downloads.
    pub read_timeout: Option<Duration>,
    /// Added to the server-side timeout of a long-poll (`wait_for_changes`) to make the request's own
    /// timeout, so that the server answers before the client gives up.
    pub long_poll_margin: Duration,
    /// When and how often failed calls are tried again.
    pub retry: RetryPolicy,
    /// The access token sent with every request, if any.
    pub token: Option<AccessToken>,
    /// PEM file of certificate authorities trusted besides the public (webpki) roots: a private CA.
    pub ca_file: Option<PathBuf>,
    /// Largest response body accepted; a larger one is TooLarge, read no further.
    pub max_response_bytes: usize,
}

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(8);

/// Default [`ClientConfig::max_response_bytes`]: room for a full page of large revisions.
pub const MAX_RESPONSE_BYTES: usize = 512 << 20;

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            read_timeout: None,
            long_poll_margin: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            token: None,
            ca_file: None,
            max_response_bytes: MAX_RESPONSE_BYTES,
        }
    }
}

impl ClientConfig {
    /// A `reqwest` client as this configuration says: the CA file trusted, the token sent (as a
    /// sensitive header), redirects never followed (a redirect could carry the token elsewhere),
    /// timeouts set. For other HTTP work against the same servers (quicksync file downloads).
    pub fn http_client(&self) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // Below the server's idle keep-alive timeout (10 s), so a pooled connection is not reused
            // just as the server closes it.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(concat!("outpost-client/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = self.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.secret()))
                .map_err(|_| Error::invalid("the access token cannot travel in an HTTP header"))?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::invalid(format!("cannot read the CA file {}: {e}", path.display())))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::invalid(format!("the CA file {} is not PEM certificates: {e}", path.display())))?;
            if certificates.is_empty() {
                return Err(Error::invalid(format!("the CA file {} holds no certificate", path.display())));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder.build().map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
    }
}
