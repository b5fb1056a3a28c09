//! One job's run: the two ends opened, the reconciler in one direction or both, its progress
//! written into the job as it goes.

use std::sync::Arc;

use outpost_api::{Database, Databases, Error, ErrorKind, Result};
use outpost_client::{ClientConfig, Locator, RemoteDatabases};
use outpost_reconciler::{replicate, Options, Progress, Report};

use super::peers::Peers;
use super::spec::Endpoint;
use super::Entry;

/// An end of a job whose remote side, if any, is a configured peer.
pub(super) enum Checked {
    /// A database this server hosts.
    Local(String),
    /// A database of a configured peer, with how to talk to it.
    Remote(Locator, ClientConfig),
}

/// Check `endpoint` against the configured peers (`role` is "source" or "target", for messages):
/// Forbidden for a URL that is not a peer's, before any connection is made.
pub(super) fn prepare(peers: &Peers, endpoint: Endpoint, role: &str) -> Result<Checked> {
    match endpoint {
        Endpoint::Local(name) => Ok(Checked::Local(name)),
        Endpoint::Remote(locator) => {
            let config = peers.client_config(&locator.base).map_err(|e| e.context(role))?;
            Ok(Checked::Remote(locator, config))
        }
    }
}

/// An end of a job, as far as it can be opened before the job runs.
pub(super) enum Side {
    /// Opened: a local database (a missing one is the request's 404, not a failed job).
    Ready(Arc<dyn Database>),
    /// A database of another server, reached when the job runs (a peer that is away is retried by the
    /// reconciler, not refused at the door).
    Remote { locator: Locator, config: ClientConfig, create: bool },
}

/// Open `endpoint` (`role` is "source" or "target", for messages), creating a local database when
/// `create` says so and it is missing.
pub(super) async fn open(dbs: &Arc<dyn Databases>, endpoint: Checked, create: bool, role: &str) -> Result<Side> {
    let name = match endpoint {
        Checked::Remote(locator, config) => return Ok(Side::Remote { locator, config, create }),
        Checked::Local(name) => name,
    };
    let opened = match dbs.open(&name).await {
        Err(e) if e.kind == ErrorKind::NotFound && create => match dbs.create(&name).await {
            // Created meanwhile by someone else: as good.
            Err(e) if e.kind == ErrorKind::AlreadyExists => dbs.open(&name).await,
            created => created,
        },
        opened => opened,
    };
    let db = opened.map_err(|e| match e.kind {
        ErrorKind::NotFound => Error::not_found(format!(
            "{role}: this server has no database named {name:?} (create it first{})",
            if role == "target" { ", or ask for create_target" } else { "" }
        )),
        _ => e.context(role),
    })?;
    Ok(Side::Ready(db))
}

/// Run the job: both ends reached, then one pass (or following, when continuous) in each direction
/// asked for. The reports in direction order; none when cancelled before replication began.
pub(super) async fn run(entry: &Arc<Entry>, source: Side, target: Side) -> Result<Vec<Report>> {
    let Some(source) = reach(entry, source, "source").await? else { return Ok(Vec::new()) };
    let Some(target) = reach(entry, target, "target").await? else { return Ok(Vec::new()) };
    let (source, target) = (&*source, &*target);
    let forward = options(entry, false);
    if !entry.spec.bidirectional {
        return Ok(vec![replicate(source, target, &forward).await?]);
    }
    let reverse = options(entry, true);
    if entry.spec.continuous {
        let (ab, ba) = tokio::try_join!(replicate(source, target, &forward), replicate(target, source, &reverse))?;
        Ok(vec![ab, ba])
    } else {
        let ab = replicate(source, target, &forward).await?;
        let ba = replicate(target, source, &reverse).await?;
        Ok(vec![ab, ba])
    }
}

fn options(entry: &Arc<Entry>, reverse: bool) -> Options {
    let job = entry.clone();
    Options {
        tables: entry.spec.tables.clone(),
        batch_size: entry.spec.batch_size,
        continuous: entry.spec.continuous,
        progress: Some(Arc::new(move |progress: &Progress| job.record_progress(reverse, *progress))),
        cancel: entry.cancel.clone(),
        ..Options::default()
    }
}

/// The database behind `side`; a remote target is created first when asked (retried while a
/// continuous job runs, like the replication itself). `None` when cancelled meanwhile.
async fn reach(entry: &Entry, side: Side, role: &str) -> Result<Option<Arc<dyn Database>>> {
    let (locator, config, create) = match side {
        Side::Ready(db) => return Ok(Some(db)),
        Side::Remote { locator, config, create } => (locator, config, create),
    };
    let server = RemoteDatabases::with_config(&locator.base, config).map_err(|e| e.context(role))?;
    if !create {
        return Ok(Some(Arc::new(server.database(&locator.name)?)));
    }
    let retry = Options::default().retry;
    let mut failures = 0;
    loop {
        let error = match server.create_remote(&locator.name).await {
            Ok(db) => return Ok(Some(Arc::new(db))),
            Err(e) if e.kind == ErrorKind::AlreadyExists => return Ok(Some(Arc::new(server.database(&locator.name)?))),
            Err(e) => e.context(format!("creating the {role} {}/dbs/{}", locator.base, locator.name)),
        };
        if !(entry.spec.continuous && matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Internal)) {
            return Err(error);
        }
        failures += 1;
        let delay = retry.delay(failures, None);
        tracing::warn!(job = %entry.spec.id, %error, ?delay, "replication job cannot create its target yet; retrying");
        tokio::select! {
            () = entry.cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
    }
}
