//! How the client talks to a server: timeouts and the retry policy (SPEC §7 faults).

use std::time::Duration;

pub use outpost_api::RetryPolicy;

/// Settings shared by a [`RemoteDatabases`](crate::RemoteDatabases) and every database it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for one request, from sending it to the end of its response body.
    pub request_timeout: Duration,
    /// Longest wait for a TCP (and TLS) connection to be established.
    pub connect_timeout: Duration,
    /// Added to the server-side timeout of a long-poll (`wait_for_changes`) to make the request's own
    /// timeout, so that the server answers before the client gives up.
    pub long_poll_margin: Duration,
    /// When and how often failed calls are tried again.
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            long_poll_margin: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}
