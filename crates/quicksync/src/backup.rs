//! Portable backups (SPEC §18): a database's whole history in the quicksync snapshot format, so it
//! moves between backends (SQLite ⇄ PostgreSQL) with its revision trees, states and knowledge.
//!
//! A backup is a directory: a snapshot (seqs 1..=n and the knowledge rows held at n) with its
//! `manifest.csv`, as a publisher writes it, and `identity.json`: the database's name, the epochs
//! naming seqs 1..=n, the chain hash at n and its knowledge rows. A restore creates the database with
//! the original's first epoch (`Genesis::restored`, so the same genesis chain), replays the snapshot's
//! events in order — which gives them the same seqs and chain hashes, checked against the identity's
//! at the end — and then the caller restores the later epochs and begins a new one
//! (`Engine::restore_epochs`, SPEC §6) and records the backup's knowledge
//! ([`Identity::knowledge_update`]). Peers that knew the original still fast-forward over seqs
//! 1..=n: their (uuid, seq, chain) rows verify on the restored database as on the original.

use std::fs;
use std::path::Path;

use outpost_api::{ChainHash, Database, Epoch, Error, KnowledgeRow, KnowledgeUpdate, ReplicaSource, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::sync_dir;
use crate::publish::{publish, PublishOptions, PublishReport};
use crate::pull::{pull, PullOptions, PullReport};

/// The file naming what a backup directory holds.
pub const IDENTITY_FILE: &str = "identity.json";

/// What [`Identity::format`] says.
const FORMAT: &str = "outpost-backup";
/// The version of `identity.json` this build writes and reads.
const VERSION: u32 = 1;

/// `identity.json`: who the backed-up database is, up to the seq the backup holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Always `outpost-backup`.
    pub format: String,
    /// The version of this file.
    pub version: u32,
    /// The database's name.
    pub name: String,
    /// The epochs naming seqs 1..=`update_seq`, oldest first.
    pub epochs: Vec<Epoch>,
    /// The last seq the backup holds.
    pub update_seq: u64,
    /// The chain hash at `update_seq`.
    pub chain: ChainHash,
    /// The database's knowledge rows held at `update_seq`.
    pub knowledge: Vec<KnowledgeRow>,
}

impl Identity {
    /// What the restored database records once its identity is restored: the rows the original held,
    /// as learned from it (the row about the original itself is one of the restored database's own
    /// epochs, which it never stores). `None` for an empty backup.
    pub fn knowledge_update(&self) -> Option<KnowledgeUpdate> {
        let epoch = self.epochs.iter().rev().find(|e| e.start_seq <= self.update_seq)?;
        Some(KnowledgeUpdate {
            source: epoch.uuid,
            source_seq: self.update_seq,
            source_chain: self.chain,
            imported: self.knowledge.clone(),
        })
    }
}

/// Write a portable backup of `source` into `dir`, which must not exist or be empty (a backup never
/// overwrites one). Writers may go on meanwhile: the backup holds the database as at its update_seq
/// when the snapshot began.
pub async fn backup(source: &dyn ReplicaSource, dir: &Path, options: &PublishOptions) -> Result<Identity> {
    let taken = fs::read_dir(dir).map(|mut entries| entries.next().is_some()).unwrap_or(false);
    if taken {
        return Err(Error::already_exists(format!("{} is not empty; a backup never overwrites one", dir.display())));
    }
    // The whole history in one snapshot, no delta repeating it.
    let options = PublishOptions { deltas_after_snapshot: true, snapshot_every: u64::MAX, ..options.clone() };
    let report: PublishReport = publish(source, dir, &options).await?;
    let end = report.update_seq;
    let info = source.info().await?;
    let epochs: Vec<Epoch> = info.epochs.iter().copied().filter(|e| e.start_seq <= end.max(1)).collect();
    let identity = Identity {
        format: FORMAT.to_owned(),
        version: VERSION,
        name: info.name,
        epochs,
        update_seq: end,
        chain: source.chain_hash_at(end).await?,
        knowledge: source.knowledge(Some(end)).await?,
    };
    write_identity(dir, &identity)?;
    Ok(identity)
}

/// Read and check a backup's `identity.json`.
pub fn read_identity(dir: &Path) -> Result<Identity> {
    let path = dir.join(IDENTITY_FILE);
    let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::not_found(format!("{} is not a portable backup (no {IDENTITY_FILE})", dir.display()))
        }
        _ => Error::internal(format!("reading {}: {e}", path.display())),
    })?;
    let identity: Identity =
        serde_json::from_str(&text).map_err(|e| Error::corrupt(format!("{}: {e}", path.display())))?;
    if identity.format != FORMAT || identity.version != VERSION {
        return Err(Error::invalid(format!(
            "{}: {} version {} (this outpost reads {FORMAT} version {VERSION})",
            path.display(),
            identity.format,
            identity.version
        )));
    }
    Ok(identity)
}

/// Replay the backup in `dir` into `target`, a new database created with the backup's identity
/// (`Genesis::restored(name, &identity.epochs)`): every file checked before anything is applied, the
/// events applied in order, and the result checked to be the original's history — the same update_seq
/// and chain hash. The caller then restores the epochs and records [`Identity::knowledge_update`].
pub async fn restore(dir: &Path, target: &dyn Database, options: &PullOptions) -> Result<(Identity, PullReport)> {
    let identity = read_identity(dir)?;
    let info = target.info().await?;
    if info.update_seq != 0 || info.epochs.first() != identity.epochs.first() {
        return Err(Error::invalid(
            "restore into a new database that begins as the backup's (created with Genesis::restored)",
        ));
    }
    let report = if identity.update_seq == 0 {
        PullReport::empty(&dir.display().to_string())
    } else {
        // A directory's files are read where they are; nothing is cached.
        let files = crate::files::open(&dir.display().to_string(), &std::env::temp_dir())?;
        pull(&*files, target, &PullOptions { knowledge: false, ..options.clone() }).await?
    };
    let after = target.info().await?;
    if (after.update_seq, after.chain) != (identity.update_seq, identity.chain) {
        return Err(Error::corrupt(format!(
            "the backup replayed to seq {} with another chain hash than the original's at seq {}: not its history",
            after.update_seq, identity.update_seq
        )));
    }
    Ok((identity, report))
}

fn write_identity(dir: &Path, identity: &Identity) -> Result<()> {
    let io = |e: std::io::Error| Error::internal(format!("writing {}: {e}", dir.join(IDENTITY_FILE).display()));
    let tmp = dir.join(format!(".{IDENTITY_FILE}.tmp"));
    let text = serde_json::to_string_pretty(identity).map_err(|e| Error::internal(e.to_string()))?;
    fs::write(&tmp, text + "\n").map_err(io)?;
    fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    fs::rename(&tmp, dir.join(IDENTITY_FILE)).map_err(io)?;
    sync_dir(dir).map_err(io)
}
