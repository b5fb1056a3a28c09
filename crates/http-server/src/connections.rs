//! The connection-level limits of SPEC §14 that keep one hostile or careless client from exhausting
//! the server: how long headers may take (also how long an idle keep-alive connection stays open), how
//! many connections are served at once (more wait in the listen backlog; served ones are unharmed),
//! how many long-polls and event streams are open at once (globally and per token), and how many
//! request-body bytes are being read at once. Set from the config's `[limits]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use outpost_api::{Error, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::Caller;

/// The limits, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, and how long an idle keep-alive
    /// connection stays open waiting for the next request.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Long-polls (`feed=longpoll`, `/wait`) and event streams (`feed=sse`) open at once.
    pub max_feeds: usize,
    /// Of those, how many one token may hold.
    pub max_feeds_per_token: usize,
    /// Request-body bytes being read at once, across all requests (a request waits for room, briefly).
    pub max_upload_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_feeds: 512,
            max_feeds_per_token: 64,
            max_upload_bytes: 256 << 20,
        }
    }
}

/// How long a request waits for room in the upload budget before it is answered 503.
pub const UPLOAD_PATIENCE: Duration = Duration::from_secs(5);

/// Open feeds per token name.
type TokenCounts = Arc<Mutex<HashMap<String, usize>>>;

/// The running counters behind the limits. Cloning shares them.
#[derive(Clone, Debug)]
pub(crate) struct Budgets {
    feeds: Arc<Semaphore>,
    max_feeds: usize,
    per_token: TokenCounts,
    max_per_token: usize,
    uploads: Arc<Semaphore>,
    max_upload: usize,
}

impl Budgets {
    pub(crate) fn new(limits: &ConnectionLimits) -> Self {
        Budgets {
            feeds: Arc::new(Semaphore::new(limits.max_feeds)),
            max_feeds: limits.max_feeds,
            per_token: Arc::default(),
            max_per_token: limits.max_feeds_per_token,
            uploads: Arc::new(Semaphore::new(limits.max_upload_bytes.min(Semaphore::MAX_PERMITS))),
            max_upload: limits.max_upload_bytes,
        }
    }

    /// A slot for one long-poll or event stream of `caller`, held until dropped; Unavailable when the
    /// server or the caller's token holds as many as allowed.
    pub(crate) fn feed(&self, caller: &Caller) -> Result<FeedSlot> {
        let permit = self.feeds.clone().try_acquire_owned().map_err(|_| {
            Error::unavailable(
                "the server holds as many long-polls and event streams as it serves at once; retry later",
            )
        })?;
        let token = match caller {
            Caller::Local => None,
            Caller::Token(token) => {
                let mut counts = self.per_token.lock().unwrap_or_else(PoisonError::into_inner);
                let count = counts.entry(token.name().to_owned()).or_default();
                if *count >= self.max_per_token {
                    return Err(Error::unavailable(format!(
                        "token {:?} holds {} long-polls and event streams, as many as one token may; close one",
                        token.name(),
                        count
                    )));
                }
                *count += 1;
                Some((token.name().to_owned(), self.per_token.clone()))
            }
        };
        Ok(FeedSlot { _permit: permit, token })
    }

    /// Long-polls and event streams open now.
    pub(crate) fn feeds_open(&self) -> usize {
        self.max_feeds - self.feeds.available_permits()
    }

    /// Room for `bytes` of request body (at most the whole budget), waiting briefly for it.
    pub(crate) async fn upload(&self, bytes: usize) -> Result<OwnedSemaphorePermit> {
        let want = bytes.clamp(1, self.max_upload.min(Semaphore::MAX_PERMITS)) as u32;
        match tokio::time::timeout(UPLOAD_PATIENCE, self.uploads.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                Err(Error::unavailable("the server is reading as many request bodies as it has room for; retry later"))
            }
        }
    }
}

/// One open long-poll or event stream, counted until dropped.
pub(crate) struct FeedSlot {
    _permit: OwnedSemaphorePermit,
    token: Option<(String, TokenCounts)>,
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        if let Some((name, counts)) = self.token.take() {
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = counts.get_mut(&name) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&name);
                }
            }
        }
    }
}
