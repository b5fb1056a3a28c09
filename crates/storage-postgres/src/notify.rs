//! Waking across processes: every write transaction sends `NOTIFY outpost_changes, '<db> <seq>'`, which
//! PostgreSQL delivers at commit, in commit order, to every session listening. Each [`crate::PostgresDatabases`]
//! keeps one such session (outside the pool) and turns the notifications into a `watch` channel per
//! database, which the engine's long-polls wait on besides its own commits
//! (`Storage::external_commits`). Deletions are announced on `outpost_deleted` so that other processes
//! forget a dropped database.
//!
//! Notifications sent while the listening session is down are lost, so after every (re)connection the
//! listener re-reads the update_seq of each database it serves and wakes the waiters of any that moved.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use outpost_api::Result;
use tokio::sync::{oneshot, watch};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The stream of a connection (TLS or not, as the config says).
type Stream = <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream;

use crate::error;
use crate::lifecycle::Shared;
use crate::schema::{self, CHANGES_CHANNEL, DELETED_CHANNEL};

/// How long to wait before reconnecting a lost listening session.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The latest update_seq heard of, per database.
#[derive(Default)]
pub(crate) struct Commits {
    seqs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Commits {
    /// A receiver of the update_seqs committed to `db` by anyone.
    pub(crate) fn subscribe(&self, db: &str) -> watch::Receiver<u64> {
        let mut seqs = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        seqs.entry(db.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// `db` has committed `seq`: wake waiters if it is news.
    pub(crate) fn committed(&self, db: &str, seq: u64) {
        let seqs = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = seqs.get(db) {
            sender.send_if_modified(|s| {
                let newer = seq > *s;
                if newer {
                    *s = seq;
                }
                newer
            });
        }
    }

    /// `db` is gone: drop its channel (a database created later under the name starts afresh).
    pub(crate) fn forget(&self, db: &str) {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).remove(db);
    }

    fn names(&self) -> Vec<String> {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

/// Start listening: connect (an error if PostgreSQL cannot be reached), run `LISTEN`, and return once
/// notifications flow; the returned task keeps listening, reconnecting when the session is lost, until
/// it is aborted or `shared` is dropped.
pub(crate) async fn start(
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    target: String,
    shared: Weak<Shared>,
) -> Result<tokio::task::JoinHandle<()>> {
    let first = pg.connect(tls.clone()).await.map_err(|e| error::map(e, &target))?;
    let (ready, listening) = oneshot::channel();
    let task = tokio::spawn(run(pg, tls, target.clone(), shared, first, ready));
    match listening.await {
        Ok(Ok(())) => Ok(task),
        Ok(Err(e)) => {
            task.abort();
            Err(e)
        }
        Err(_) => Err(outpost_api::Error::unavailable(format!("postgres at {target}: the listener stopped"))),
    }
}

type Connected = (tokio_postgres::Client, tokio_postgres::Connection<tokio_postgres::Socket, Stream>);

async fn run(
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    target: String,
    shared: Weak<Shared>,
    first: Connected,
    ready: oneshot::Sender<Result<()>>,
) {
    let mut next = Some(first);
    let mut ready = Some(ready);
    loop {
        let connected = match next.take() {
            Some(c) => Ok(c),
            None => pg.connect(tls.clone()).await,
        };
        let outcome = match connected {
            Ok((client, connection)) => session(&client, connection, &shared, &target, &mut ready).await,
            Err(e) => Err(error::map(e, &target)),
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(outcome.map(|_| ()));
            return;
        }
        if shared.strong_count() == 0 {
            return;
        }
        if let Err(e) = outcome {
            tracing::warn!(target = %target, "lost the session listening for commits ({e}); reconnecting");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// One listening session, until its connection fails (an error) or `shared` is dropped (Ok).
async fn session(
    client: &tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<tokio_postgres::Socket, Stream>,
    shared: &Weak<Shared>,
    target: &str,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
) -> Result<()> {
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {CHANGES_CHANNEL}; LISTEN {DELETED_CHANNEL}");
    let listen = client.batch_execute(&sql);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done.map_err(|e| error::map(e, target))?;
                listening = true;
                let Some(shared) = shared.upgrade() else { return Ok(()) };
                resync(&shared).await;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let Some(shared) = shared.upgrade() else { return Ok(()) };
                    if n.channel() == CHANGES_CHANNEL {
                        if let Some((db, seq)) = n.payload().rsplit_once(' ') {
                            if let Ok(seq) = seq.parse() {
                                shared.commits.committed(db, seq);
                            }
                        }
                    } else if n.channel() == DELETED_CHANNEL {
                        shared.forget(n.payload()).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(error::map(e, target)),
                None => return Err(outpost_api::Error::unavailable(format!("postgres at {target}: connection closed"))),
            }
        }
    }
}

/// Wake the waiters of every database whose update_seq moved while nobody was listening.
async fn resync(shared: &Shared) {
    let Ok(client) = shared.pool.get().await else { return };
    for db in shared.commits.names() {
        let Ok(schema) = schema::schema_of(&db) else { continue };
        if let Ok(row) = client.query_one(&format!("SELECT update_seq FROM {schema}._meta"), &[]).await {
            if let Ok(seq) = row.try_get::<_, i64>(0) {
                shared.commits.committed(&db, seq as u64);
            }
        }
    }
}
