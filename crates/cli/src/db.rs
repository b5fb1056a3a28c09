//! `outpost db …`: create, info, list, check, back up, restore and reidentify databases.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outpost_api::{names, CompactRequest, Databases, Error, Limits, Result};
use outpost_sqlite::SqliteDatabases;

use crate::locator::Locator;
use crate::output::{self, ListedDb};
use crate::DbCommand;

pub async fn run(cmd: DbCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        DbCommand::Create { path, name } => create(&path, name, json).await?,
        DbCommand::Info { db } => info(&db, json).await?,
        DbCommand::List { dir } => list(&dir, json).await?,
        DbCommand::Check { db } => return check(&db, json).await,
        DbCommand::Reidentify { db } => reidentify(&db, json).await?,
        DbCommand::Compact { db, table, keep_bodies, vacuum } => {
            compact(&db, CompactRequest { table, keep_bodies, ..CompactRequest::default() }, vacuum, json).await?
        }
        DbCommand::Backup { db, file, portable } => backup(&db, &file, portable, json).await?,
        DbCommand::Restore { file, target, name } if crate::backup::is_portable(&file) => {
            crate::backup::restore(&file, &target, name, json).await?
        }
        DbCommand::Restore { file, target, name } => restore(&file, Path::new(&target), name, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(path: &str, name: Option<String>, json: bool) -> Result<()> {
    let locator: Locator = path.parse()?;
    let name = match name {
        Some(name) => {
            names::validate_db_name(&name)?;
            name
        }
        None => {
            let name = locator.default_name()?;
            names::validate_db_name(&name)
                .map_err(|e| Error::invalid(format!("{} (taken from {path}); choose one with --name", e.message)))?;
            name
        }
    };
    if let Locator::File(file) = &locator {
        // SQLite would only say "unable to open database file".
        let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent.filter(|p| !p.is_dir()) {
            return Err(Error::not_found(format!("{path}: directory {} does not exist", dir.display())));
        }
    }
    let db = locator.create(&name, Limits::default()).await?;
    let info = db.database().info().await?;
    if json {
        output::emit_json(&info)
    } else {
        output::emit(&format!("created {} at {locator}\n{}", info.name, output::info_human(&info)))
    }
}

async fn info(db: &str, json: bool) -> Result<()> {
    let db = db.parse::<Locator>()?.open(Limits::default()).await?;
    let info = db.database().info().await?;
    if json {
        output::emit_json(&info)
    } else {
        output::emit(&output::info_human(&info))
    }
}

async fn list(dir: &Path, json: bool) -> Result<()> {
    if let Some(Ok(Locator::Postgres(url))) = dir.to_str().map(str::parse) {
        return list_postgres(&url, json).await;
    }
    if !dir.is_dir() {
        return Err(Error::not_found(format!("{}: no such directory", dir.display())));
    }
    let dbs = SqliteDatabases::new(dir, Limits::default())?;
    let place = dir.display().to_string();
    list_in(&dbs, &place, |name| dir.join(format!("{name}.outpost")).display().to_string(), json).await
}

/// The databases of a PostgreSQL (its registry), each with its info or the error opening it.
async fn list_postgres(url: &str, json: bool) -> Result<()> {
    let dbs = outpost_postgres::PostgresDatabases::connect_url(url, Limits::default()).await?;
    let place = dbs.shown_url();
    list_in(&dbs, place, |name| format!("{place} --db {name}"), json).await
}

/// List the databases of `dbs` (found in `place`), each with its info or the error opening it: one
/// unreadable database does not hide the others.
async fn list_in(dbs: &dyn Databases, place: &str, locator: impl Fn(&str) -> String, json: bool) -> Result<()> {
    let mut listed = Vec::new();
    for name in dbs.list().await? {
        let path = locator(&name);
        let (info, error) = match dbs.open(&name).await {
            Ok(db) => match db.info().await {
                Ok(info) => (Some(info), None),
                Err(e) => (None, Some(e)),
            },
            Err(e) => (None, Some(e)),
        };
        listed.push(ListedDb { name, path, info, error });
    }
    if json {
        output::emit_json(&listed)
    } else if listed.is_empty() {
        output::note(&format!("no databases in {place}"));
        Ok(())
    } else {
        output::emit(&output::dbs_human(&listed))
    }
}

/// A spinner on stderr while `what` runs, only when a person is watching.
fn spinner(what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

async fn check(db: &str, json: bool) -> Result<ExitCode> {
    let locator: Locator = db.parse()?;
    let db = locator.open(Limits::default()).await?;
    let engine = db.engine("db check")?;
    let bar = spinner(&format!("checking {locator}"));
    let report = engine.check().await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    if json {
        let mut value = serde_json::to_value(&report).map_err(|e| Error::internal(e.to_string()))?;
        value["ok"] = report.problems.is_empty().into();
        output::emit_json(&value)?;
    } else {
        output::emit(&output::check_human(&report))?;
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn compact(db: &str, request: CompactRequest, vacuum: bool, json: bool) -> Result<()> {
    let locator: Locator = db.parse()?;
    let db = locator.open(Limits::default()).await?;
    let mut report = match db.engine("db compact") {
        Ok(engine) => {
            if vacuum {
                // Refused before the compaction, not after it (whose report would be lost).
                engine.can_vacuum()?;
            }
            let bar = output::Bar::new(json, &format!("compacting {locator}"), "seq ");
            let shown = bar.clone();
            let report = engine
                .compact(request, &move |p| {
                    shown.show(p.seq, p.upto, &format!("{} bodies dropped", p.report.bodies_dropped))
                })
                .await;
            bar.finish();
            let report = report?;
            if vacuum {
                let spinner = spinner(&format!("vacuuming {locator}"));
                let done = engine.vacuum().await;
                if let Some(bar) = spinner {
                    bar.finish_and_clear();
                }
                done?;
            }
            report
        }
        Err(_) if vacuum => return Err(Error::invalid("--vacuum works on a local SQLite file only")),
        // A server compacts its own database (and returns the space itself).
        Err(_) => {
            let spinner = spinner(&format!("compacting {locator}"));
            let report = db.database().compact(request).await;
            if let Some(bar) = spinner {
                bar.finish_and_clear();
            }
            report?
        }
    };
    if vacuum {
        report.size_after = db.database().size_bytes().await?;
    }
    if json {
        output::emit_json(&report)
    } else {
        output::emit(&output::compact_human(&report))
    }
}

async fn reidentify(db: &str, json: bool) -> Result<()> {
    let db = db.parse::<Locator>()?.open(Limits::default()).await?;
    let epoch = db.engine("db reidentify")?.reidentify().await?;
    if json {
        output::emit_json(&epoch)
    } else {
        output::emit(&format!("new epoch {} from seq {}", epoch.uuid, epoch.start_seq))
    }
}

async fn backup(db: &str, file: &Path, portable: bool, json: bool) -> Result<()> {
    let locator: Locator = db.parse()?;
    if portable || !matches!(locator, Locator::File(_)) {
        return crate::backup::write(db, file, json).await;
    }
    let db = locator.open(Limits::default()).await?;
    let bar = spinner(&format!("backing up {locator}"));
    let done = db.engine("db backup")?.backup(file).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    done?;
    let info = db.database().info().await?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if json {
        output::emit_json(&serde_json::json!({
            "file": file.display().to_string(), "bytes": bytes, "uuid": info.uuid, "update_seq": info.update_seq,
        }))
    } else {
        output::emit(&format!(
            "backed up {} (uuid {}, at least up to seq {}) to {} ({bytes} bytes)",
            info.name,
            info.uuid,
            info.update_seq,
            file.display()
        ))
    }
}

async fn restore(file: &Path, path: &Path, name: Option<String>, json: bool) -> Result<()> {
    let name = match name {
        Some(name) => name,
        None => Locator::File(path.to_owned()).default_name()?,
    };
    names::validate_db_name(&name).map_err(|e| Error::invalid(format!("{}; choose one with --name", e.message)))?;
    let bar = spinner(&format!("restoring {}", file.display()));
    let restored = outpost_sqlite::restore(file, path, &name, Limits::default()).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (db, epoch) = restored?;
    let info = outpost_api::InfoReader::info(&db).await?;
    if json {
        output::emit_json(&serde_json::json!({ "info": info, "new_epoch": epoch }))
    } else {
        output::emit(&format!(
            "restored {} to {} at seq {}; new epoch {} from seq {}\n{}",
            file.display(),
            path.display(),
            info.update_seq,
            epoch.uuid,
            epoch.start_seq,
            output::info_human(&info)
        ))
    }
}
