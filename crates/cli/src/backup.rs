//! `outpost db backup --portable` and `outpost db restore` of a portable backup (SPEC §18): a
//! database's whole history in a directory of quicksync files, restored into a SQLite file or a
//! PostgreSQL schema with its epochs and knowledge and a new epoch (`outpost_quicksync::backup`).

use std::path::Path;
use std::sync::Arc;

use outpost_api::{Databases, Error, Limits, Result};
use outpost_engine::storage::Genesis;
use outpost_quicksync::backup::{self, Identity, IDENTITY_FILE};
use outpost_quicksync::{PublishOptions, PublishProgress, PullOptions, PullProgress};

use crate::locator::Locator;
use crate::output::{self, Bar};

/// Whether `path` is a portable backup (a directory with its identity).
pub fn is_portable(path: &Path) -> bool {
    path.join(IDENTITY_FILE).is_file()
}

/// Write a portable backup of the database at `db` into the directory `dir`.
pub async fn write(db: &str, dir: &Path, json: bool) -> Result<()> {
    let locator: Locator = db.parse()?;
    let db = locator.open(Limits::default()).await?;
    let bar = Bar::new(json, &format!("backing up {locator}"), "");
    let view = bar.clone();
    let options = PublishOptions {
        progress: Some(Arc::new(move |p: &PublishProgress| view.show(p.events, p.total, "events"))),
        ..PublishOptions::default()
    };
    let written = backup::backup(db.database(), dir, &options).await;
    bar.finish();
    let identity = written?;
    if json {
        return output::emit_json(&serde_json::json!({
            "dir": dir.display().to_string(), "name": identity.name, "update_seq": identity.update_seq,
            "epochs": identity.epochs, "knowledge_rows": identity.knowledge.len(),
        }));
    }
    output::emit(&format!(
        "backed up {} up to seq {} ({} epoch(s), {} knowledge row(s)) to {}, portable: restore it into a file or a \
         PostgreSQL database with `outpost db restore {} TARGET`",
        identity.name,
        identity.update_seq,
        identity.epochs.len(),
        identity.knowledge.len(),
        dir.display(),
        dir.display()
    ))
}

/// Restore the portable backup in `dir` into a new database at `target` (a file path, or a
/// postgres:// URL with --db), named `name` (default: the target's name).
pub async fn restore(dir: &Path, target: &str, name: Option<String>, json: bool) -> Result<()> {
    let identity = backup::read_identity(dir)?;
    let locator: Locator = target.parse()?;
    let name = match name {
        Some(name) => name,
        None => locator.default_name()?,
    };
    let genesis = Genesis::restored(&name, &identity.epochs)?;
    let bar = Bar::new(json, &format!("restoring {} into {locator}", dir.display()), "");
    let view = bar.clone();
    let options = PullOptions {
        progress: Some(Arc::new(move |p: &PullProgress| view.show(p.entries, p.entries_total, p.phase))),
        ..PullOptions::default()
    };
    let restored = match &locator {
        Locator::File(path) => into_file(dir, path, genesis, &options).await,
        Locator::Postgres(url) => into_postgres(dir, url, genesis, &options).await,
        Locator::Http(_) => Err(Error::invalid(
            "restore into a local database (a file or PostgreSQL); a server's database can then replicate from it",
        )),
    };
    bar.finish();
    let (info, epoch) = restored?;
    if json {
        return output::emit_json(&serde_json::json!({ "info": info, "new_epoch": epoch }));
    }
    output::emit(&format!(
        "restored {} into {locator} at seq {}; new epoch {} from seq {}\n{}",
        dir.display(),
        info.update_seq,
        epoch.uuid,
        epoch.start_seq,
        output::info_human(&info)
    ))
}

/// The restored database's identity and knowledge, once its events are replayed.
async fn finish<S: outpost_engine::storage::Storage>(
    db: &outpost_engine::Engine<S>,
    identity: &Identity,
) -> Result<outpost_api::Epoch> {
    let epoch = db.restore_epochs(&identity.epochs).await?;
    if let Some(update) = identity.knowledge_update() {
        outpost_api::ReplicaTarget::record_knowledge(db, update).await?;
    }
    Ok(epoch)
}

/// Into a new file, built aside and moved into place only when whole (a bootstrap).
async fn into_file(
    dir: &Path,
    path: &Path,
    genesis: Genesis,
    options: &PullOptions,
) -> Result<(outpost_api::DbInfo, outpost_api::Epoch)> {
    let boot = outpost_sqlite::Bootstrap::begin_with(path, genesis, Limits::default()).await?;
    let db = boot.database();
    let (identity, _) = backup::restore(dir, &*db, options).await?;
    let epoch = finish(&*db, &identity).await?;
    drop(db);
    let db = boot.finish().await?;
    Ok((outpost_api::InfoReader::info(&db).await?, epoch))
}

/// Into a new PostgreSQL database, built under a temporary name (`restoring-…`) and renamed to its
/// own only when whole, with its new epoch and knowledge: no server serves it half-made under the
/// original's uuid. Deleted again when the restore fails.
async fn into_postgres(
    dir: &Path,
    url: &str,
    genesis: Genesis,
    options: &PullOptions,
) -> Result<(outpost_api::DbInfo, outpost_api::Epoch)> {
    let dbs = outpost_postgres::PostgresDatabases::connect_url(url, Limits::default()).await?;
    let name = genesis.name.clone();
    if dbs.list().await?.contains(&name) {
        return Err(Error::already_exists(format!("database {name:?} exists; restore into a new one")));
    }
    let aside = format!("restoring-{}", &outpost_api::Uuid::new_v4().simple().to_string()[..12]);
    let db = dbs.create_postgres_as(Genesis { name: aside.clone(), ..genesis }).await?;
    let restored = async {
        let (identity, _) = backup::restore(dir, &*db, options).await?;
        let epoch = finish(&*db, &identity).await?;
        let db = dbs.rename(&aside, &name).await?;
        Ok::<_, Error>((outpost_api::InfoReader::info(&*db).await?, epoch))
    }
    .await;
    if restored.is_err() {
        if let Err(e) = dbs.delete(&aside).await {
            tracing::warn!(db = %aside, error = %e, "removing a failed restore");
        }
    }
    restored
}
