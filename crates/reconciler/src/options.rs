//! What a replication is asked to do, and how it reports progress.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use outpost_api::RetryPolicy;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Called after every batch written (and once at the end of a pass), for progress bars.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Counters of one replication so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    /// Changes-feed entries read from the source (records looked at).
    pub changes_read: u64,
    /// Revisions fetched from the source because the target lacked them.
    pub revisions_fetched: u64,
    /// Revision events the target stored.
    pub revisions_written: u64,
    /// Bytes of the fetched revisions, as JSON (what crossed the wire for a remote source).
    pub bytes: u64,
    /// The source seq the target has committed up to.
    pub source_seq: u64,
    /// The source's update_seq when last seen: `source_seq` reaches it when the pass is drained.
    pub source_update_seq: u64,
}

/// Options of [`replicate`](crate::replicate) and [`sync`](crate::sync).
#[derive(Clone)]
pub struct Options {
    /// Replicate only these tables (and their `_tables` definition records). A filtered pass keeps a
    /// resume point of its own and records no knowledge: it does not hold everything of the source.
    pub tables: Option<Vec<String>>,
    /// Changes-feed entries per page, and most revisions per `put_revisions`.
    pub batch_size: usize,
    /// About the most bytes of JSON one request carries (revs-diff, revs/get, revs/put): a page whose
    /// lists are larger — a record with a deep history, large bodies — is sent in several requests,
    /// so none exceeds the peer's request limit ([`crate::DEFAULT_MAX_REQUEST_BYTES`] by default,
    /// half a server's default limit).
    pub max_request_bytes: usize,
    /// Keep following the source's feed after it is drained, until cancelled.
    pub continuous: bool,
    /// How long one long-poll on the source waits in continuous mode.
    pub poll_timeout: Duration,
    /// Restarts of a pass after a transient failure (network error, Unavailable, Internal). In
    /// continuous mode failures are retried for as long as the job runs, with the same backoff.
    pub retry: RetryPolicy,
    /// Progress reports.
    pub progress: Option<ProgressFn>,
    /// Cancels a running replication; it stops at the next call boundary, with everything committed
    /// so far kept.
    pub cancel: CancellationToken,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tables: None,
            batch_size: 1000,
            max_request_bytes: crate::DEFAULT_MAX_REQUEST_BYTES,
            continuous: false,
            poll_timeout: Duration::from_secs(30),
            retry: RetryPolicy { max_attempts: 8, ..RetryPolicy::default() },
            progress: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("tables", &self.tables)
            .field("batch_size", &self.batch_size)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("continuous", &self.continuous)
            .field("poll_timeout", &self.poll_timeout)
            .field("retry", &self.retry)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}
