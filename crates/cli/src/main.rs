//! `outpost`, the command-line tool (SPEC §12): the command-line grammar (clap), dispatch to the
//! command modules, and the mapping of error kinds onto exit codes.
#![forbid(unsafe_code)]

mod attrs;
mod backup;
mod cert;
mod db;
mod demo;
mod locator;
mod output;
mod quicksync;
mod records;
mod remote;
mod serve;
mod sync;
mod tables;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use outpost_api::{Error, ErrorKind, FieldDecl, ReconcilePolicy, RevId};

const ABOUT: &str = "Outpost: an offline-first, multi-master record database";

const LONG_ABOUT: &str = "Outpost: an offline-first, multi-master record database.

A database is named by a locator: a SQLite file path (./field.outpost), a database on an Outpost \
server (http://127.0.0.1:7070/dbs/NAME), or a PostgreSQL URL plus --db NAME \
(postgres://user@host:5432/dbname --db field).";

const EXIT_CODES: &str = "Exit codes:
  0   success
  1   other failure: an internal error, or `db check` found problems
  2   usage: bad or missing arguments
  3   not found
  4   conflict: the named revision is not current (the message names the current one)
  5   invalid input
  6   already exists
  7   too large
  8   corrupt data
  9   unauthorized
  10  forbidden
  11  unavailable: retrying may succeed

Errors are printed to stderr as `error: <kind>: <message>`.
Set OUTPOST_LOG (e.g. OUTPOST_LOG=debug) to log to stderr.";

/// The `outpost` command line.
#[derive(Parser, Debug)]
#[command(name = "outpost", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Print machine-readable JSON (records in typed wire form) instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// The Outpost database inside a postgres:// locator (a schema of that PostgreSQL database).
    #[arg(long = "db", value_name = "NAME", global = true, env = "OUTPOST_DB")]
    postgres_db: Option<String>,

    /// A file holding the access token sent to http(s):// locators (default: $OUTPOST_TOKEN). The
    /// token itself is never a command-line argument, where `ps` would show it.
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,

    /// A PEM file of certificate authorities to trust for https:// locators, besides the public ones.
    #[arg(long, value_name = "FILE", global = true, env = "OUTPOST_CA_FILE")]
    ca_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// See Outpost work: the scenarios it was built for, run for real on database files in a temporary
    /// directory and narrated step by step — offline edits and their conflicts, quicksync, transitive
    /// fast-forward and its trap, a copied file re-identified. Exits 1 if a step does not come out as
    /// told.
    Demo {
        /// Keep the databases and files afterwards (their directory is printed) to look at them.
        #[arg(long)]
        keep: bool,
    },
    /// Serve the HTTP API over a data directory of databases (one `<name>.outpost` file each) or over
    /// a PostgreSQL (one schema each; several servers may share it), and the quicksync files
    /// published for them (with range requests, so downloads resume).
    Serve(ServeArgs),
    /// Create, inspect, list, check, back up, restore and reidentify databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Create, list and show tables.
    #[command(subcommand)]
    Table(TableCommand),
    /// Create or update a record.
    Put(PutArgs),
    /// Read a record: its reconciled state, or one revision.
    Get(GetArgs),
    /// Delete a record (write a tombstone that replicates like any revision).
    Delete(DeleteArgs),
    /// List the records of a table in id order, a page at a time.
    Ls(LsArgs),
    /// Read a page of the changes feed: each changed record once, in seq order.
    Changes(ChangesArgs),
    /// Replicate SOURCE into TARGET (or both ways): copy every revision the target lacks.
    Sync(SyncArgs),
    /// Publish a database as static snapshot and delta files, or bootstrap a database from them.
    #[command(subcommand)]
    Quicksync(quicksync::QuicksyncCommand),
    /// Make access tokens for a server's config (`[[tokens]]`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Make a private certificate authority and a server certificate, for trying out HTTPS and for
    /// private networks.
    #[command(subcommand)]
    Cert(cert::CertCommand),
}

#[derive(Args, Debug)]
#[command(after_help = "Serving on a network needs a config file (docs/SECURITY.md): access tokens \
(`outpost token new`), and TLS ([tls] cert and key) unless allow_plain_http = true. Flags override the file.")]
struct ServeArgs {
    /// The server config (TOML): listen, data or postgres, quicksync, [tls], allow_plain_http,
    /// [[tokens]], [[peers]], [cors], [limits]. See docs/SECURITY.md.
    #[arg(long, env = "OUTPOST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory: one SQLite file per database (created if missing; default outpost-data).
    #[arg(long, env = "OUTPOST_DATA")]
    data: Option<PathBuf>,
    /// Serve the databases of this PostgreSQL instead of a data directory (postgres://user:pw@host:port/db).
    #[arg(long, env = "OUTPOST_POSTGRES", value_name = "URL", conflicts_with = "data")]
    postgres: Option<String>,
    /// The address to listen on (default 127.0.0.1:7070). Any other than a loopback address needs
    /// access tokens, and TLS unless the config allows plain HTTP.
    #[arg(long, env = "OUTPOST_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Serve the quicksync files published under DIR (DIR/<db>/manifest.csv and the files it lists) at
    /// /dbs/<db>/quicksync/…, with range requests. Default with --data: <data>/quicksync; with --postgres
    /// none are served unless this is given. Created if missing.
    #[arg(long, env = "OUTPOST_QUICKSYNC", value_name = "DIR")]
    quicksync: Option<PathBuf>,
    /// Publish each database's quicksync files into the quicksync directory by itself, once this many
    /// revision events are unpublished (also the most events in one delta). Off unless given.
    #[arg(long, value_name = "N")]
    publish_every: Option<u64>,
    /// With --publish-every: also publish whatever is new at least this often, in seconds.
    #[arg(long, value_name = "SECS", requires = "publish_every")]
    publish_interval: Option<u64>,
    /// With --publish-every: a new snapshot once this many events follow the latest one.
    #[arg(long, value_name = "N", requires = "publish_every", default_value_t = outpost_quicksync::publish::DEFAULT_SNAPSHOT_EVERY)]
    publish_snapshot_every: u64,
    /// With --publish-every: a database's first publish writes only its snapshot, and its deltas start
    /// after it (its history so far written once, not twice).
    #[arg(long, requires = "publish_every")]
    publish_deltas_after_snapshot: bool,
    /// How often, in seconds, to compact the tables whose definitions set keep_bodies (0: never).
    #[arg(long, value_name = "SECS", default_value_t = outpost_server::DEFAULT_COMPACT_EVERY.as_secs())]
    compact_every: u64,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Create a database file.
    Create {
        /// The database file to create (a SQLite path; it must not exist).
        path: String,
        /// The database name (default: the file name without its extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show a database's name, identity (uuid, epochs), update_seq, chain hash and record count.
    Info {
        /// The database locator (a SQLite file path).
        db: String,
    },
    /// List the databases (`*.outpost` files) in a directory, or in a PostgreSQL (postgres://…).
    List {
        /// The directory to look in, or a PostgreSQL URL.
        dir: PathBuf,
    },
    /// Verify every revision hash and the chain hash; exit 1 and name each problem when any.
    Check {
        /// The database locator (a SQLite file path).
        db: String,
    },
    /// Drop the bodies of old revisions that no read needs (SPEC §4.5): those of non-leaf revisions
    /// more than --keep-bodies generations below every leaf. Every revision id, parent and seq stays,
    /// so replication, reads of current records and merges are unchanged; reading an old revision
    /// itself answers "not stored" afterwards. Runs in small batches while writers go on, shows its
    /// progress, and reports the bodies dropped and the space returned.
    #[command(after_help = "Examples:\n  outpost db compact field.outpost\n  \
                            outpost db compact field.outpost --table notes --keep-bodies 10\n  \
                            outpost db compact field.outpost --vacuum")]
    Compact {
        /// The database locator: a SQLite file path, a postgres:// URL with --db, or an http(s)://…/dbs/NAME URL
        /// (the server compacts; needs an admin token).
        db: String,
        /// Only this table (default: every table).
        #[arg(long)]
        table: Option<String>,
        /// Generations of bodies kept below every leaf (default: each table's own keep_bodies, else 0:
        /// only leaves, and the bases of open merge-fields conflicts, keep their bodies).
        #[arg(long, value_name = "N")]
        keep_bodies: Option<u64>,
        /// Afterwards rewrite a SQLite file without its free pages (VACUUM): needed once for files made
        /// before Outpost returned space by itself; blocks writers while it runs and needs free disk
        /// space about the database's size.
        #[arg(long)]
        vacuum: bool,
    },
    /// Begin a new identity epoch (after copying a database file) and print it.
    Reidentify {
        /// The database locator (a SQLite file path).
        db: String,
    },
    /// Write a consistent backup of a database while writers go on: a copy of a SQLite file, or with
    /// --portable (always for PostgreSQL and servers) a directory of quicksync files that restores
    /// into SQLite or PostgreSQL with the database's whole history, epochs and knowledge.
    #[command(after_help = "Examples:\n  outpost db backup field.outpost field-backup.outpost\n  \
                            outpost db backup field.outpost ./field-backup --portable\n  \
                            outpost --db field db backup postgres://app@db.internal/outpost ./field-backup")]
    Backup {
        /// The database locator: a SQLite file path, a postgres:// URL with --db, or an http(s)://…/dbs/NAME URL.
        db: String,
        /// The backup to write: a file (a SQLite copy) or, portable, a directory (new or empty).
        file: PathBuf,
        /// Write a portable backup (a directory) of a SQLite database too.
        #[arg(long)]
        portable: bool,
    },
    /// Restore a database from a backup into a new database. The restored database begins a new
    /// identity epoch, so peers never mistake it for the original; restored from a portable backup it
    /// keeps the original's epochs for the seqs the backup holds, so peers that knew them still
    /// fast-forward over them.
    #[command(after_help = "Examples:\n  outpost db restore field-backup.outpost field.outpost\n  \
                            outpost --db field db restore ./field-backup postgres://app@db.internal/outpost")]
    Restore {
        /// The backup: a file written by `outpost db backup` (or a copy of a database file), or a
        /// portable backup's directory.
        file: PathBuf,
        /// The database to create: a file path, or (from a portable backup) a postgres:// URL with --db.
        target: String,
        /// The database name (default: the file name without its extension, or --db).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum TableCommand {
    /// Create a table.
    Create(TableCreateArgs),
    /// List the tables of a database.
    List {
        /// The database locator (a SQLite file path).
        db: String,
    },
    /// Show a table's definition.
    Show {
        /// The database locator (a SQLite file path).
        db: String,
        /// The table name.
        name: String,
    },
    /// Change a table's definition: only what is given changes.
    #[command(after_help = "Examples:\n  outpost table update field.outpost notes --keep-bodies 10\n  \
                            outpost table update field.outpost notes --keep-all-bodies --description 'field notes'")]
    Update(tables::TableUpdateArgs),
}

/// How a table reconciles conflicting revisions.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum PolicyArg {
    /// The winning revision's body; conflicts are kept and can be listed.
    KeepConflicts,
    /// A field-level three-way merge of the conflicting revisions.
    MergeFields,
}

impl From<PolicyArg> for ReconcilePolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::KeepConflicts => ReconcilePolicy::KeepConflicts,
            PolicyArg::MergeFields => ReconcilePolicy::MergeFields,
        }
    }
}

#[derive(Args, Debug)]
struct TableCreateArgs {
    /// The database locator (a SQLite file path).
    db: String,
    /// The table name: a-z, 0-9 and '_', starting with a letter, at most 63 characters.
    name: String,
    /// What the table holds.
    #[arg(long, default_value = "")]
    description: String,
    /// How conflicting revisions are reconciled.
    #[arg(long, value_enum, default_value = "keep-conflicts")]
    policy: PolicyArg,
    /// A declared field, checked on local writes: name:type or name:type:required, where type is
    /// null, bool, int, float, decimal, string, bytes, timestamp, list or map. Repeatable.
    #[arg(long = "field", value_name = "NAME:TYPE[:required]", value_parser = attrs::parse_field)]
    fields: Vec<(String, FieldDecl)>,
    /// Free-form metadata as a plain JSON object.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Who creates the table (default: $OUTPOST_USER).
    #[arg(long, env = "OUTPOST_USER")]
    created_by: Option<String>,
    /// Have the server compact the table on its schedule, keeping bodies this many generations
    /// below every leaf (default: every body is kept).
    #[arg(long, value_name = "N")]
    keep_bodies: Option<u64>,
    /// Open the table to CouchDB-protocol peers such as PouchDB (needs keep-conflicts).
    #[arg(long)]
    couch: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  outpost put field.outpost people ann name=Ann size=4 'tags=[\"a\"]'
  outpost put field.outpost people ann --rev 1-… --plain '{\"name\": \"Ann\", \"size\": 5}'
  outpost put field.outpost people --wire '{\"when\": {\"timestamp\": \"2026-01-01T00:00:00Z\"}}'")]
struct PutArgs {
    /// The database locator (a SQLite file path).
    db: String,
    /// The table.
    table: String,
    /// The record id (a UUID v7 is generated when absent). An id containing '=' needs --id.
    id: Option<String>,
    /// Attributes as KEY=VALUE: VALUE is plain JSON when it parses (size=4, ok=true, tags='["a"]',
    /// note='"4"'), else text (name=Ann).
    #[arg(value_name = "KEY=VALUE")]
    attrs: Vec<String>,
    /// The record id, for ids that contain '='.
    #[arg(long = "id", value_name = "ID")]
    id_flag: Option<String>,
    /// The revision this write edits (required to update an existing record).
    #[arg(long, value_parser = parse_rev)]
    rev: Option<RevId>,
    /// Attributes as a typed wire JSON object ({"size": {"int": "4"}}); `-` reads stdin, @FILE a file.
    #[arg(long, value_name = "JSON")]
    wire: Option<String>,
    /// Attributes as a plain JSON object ({"size": 4}); `-` reads stdin, @FILE a file.
    #[arg(long, value_name = "JSON")]
    plain: Option<String>,
    /// A conflicting revision this write resolves (it gets a tombstone). Repeatable.
    #[arg(long, value_name = "REV", value_parser = parse_rev)]
    resolves: Vec<RevId>,
}

#[derive(Args, Debug)]
struct GetArgs {
    /// The database locator (a SQLite file path).
    db: String,
    /// The table.
    table: String,
    /// The record id.
    id: String,
    /// Read this revision's own body instead of the reconciled state.
    #[arg(long, value_parser = parse_rev)]
    rev: Option<RevId>,
    /// List conflicting revisions and fields a merge could not settle.
    #[arg(long)]
    conflicts: bool,
    /// List the revision history, newest first.
    #[arg(long)]
    revs: bool,
    /// Print JSON with the attributes as plain JSON (implies --json).
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// The database locator (a SQLite file path).
    db: String,
    /// The table.
    table: String,
    /// The record id.
    id: String,
    /// The revision to delete (default: the current winner).
    #[arg(long, value_parser = parse_rev)]
    rev: Option<RevId>,
}

#[derive(Args, Debug)]
struct LsArgs {
    /// The database locator (a SQLite file path).
    db: String,
    /// The table.
    table: String,
    /// Start after this id (the `next_after` of the previous page).
    #[arg(long, value_name = "ID")]
    after: Option<String>,
    /// Most records to list (1-10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Include deleted records.
    #[arg(long)]
    deleted: bool,
    /// Print JSON with the attributes as plain JSON (implies --json).
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
struct ChangesArgs {
    /// The database locator (a SQLite file path).
    db: String,
    /// Changes after this seq (the `last_seq` of the previous page).
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Most changes to list (1-10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Only these tables, comma-separated.
    #[arg(long, value_name = "T1,T2", value_delimiter = ',')]
    tables: Option<Vec<String>>,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Replicate SOURCE into TARGET: copy every revision the target lacks (SPEC §7).

Each locator is a SQLite file path or an http(s)://host:port/dbs/NAME URL. The pass starts where the \
target's resume point or its knowledge about the source says (each verified against the source's \
chain hash), so a rerun or a first sync from a peer of a peer transfers only what is new. Progress is \
committed with the data: interrupt it (Ctrl-C, a crash, a lost connection) and run it again to go on \
from where it stopped. Network faults are retried with backoff.",
    after_help = "Examples:
  outpost sync field.outpost http://127.0.0.1:7070/dbs/field
  outpost sync http://hq:7070/dbs/stock store.outpost --create-target --both
  outpost sync a.outpost b.outpost --continuous --tables orders,items"
)]
struct SyncArgs {
    /// Where revisions come from (a SQLite file path or an http(s)://…/dbs/NAME URL).
    source: String,
    /// Where they go.
    target: String,
    /// Keep following the source's changes (long-poll) until interrupted with Ctrl-C.
    #[arg(long)]
    continuous: bool,
    /// Replicate both ways: SOURCE → TARGET, then TARGET → SOURCE (at once with --continuous).
    #[arg(long)]
    both: bool,
    /// Only these tables (and their definitions), comma-separated.
    #[arg(long, value_name = "T1,T2", value_delimiter = ',')]
    tables: Option<Vec<String>>,
    /// Changes per page and revisions per write (1-10000).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Create TARGET when it does not exist (named after its file or URL).
    #[arg(long)]
    create_target: bool,
    /// The token for an http(s):// SOURCE, from this file (default: --token-file or $OUTPOST_TOKEN).
    #[arg(long, value_name = "FILE")]
    source_token_file: Option<PathBuf>,
    /// The token for an http(s):// TARGET, from this file (default: --token-file or $OUTPOST_TOKEN).
    #[arg(long, value_name = "FILE")]
    target_token_file: Option<PathBuf>,
}

/// A revision id argument; clap reports a bad one as a usage error.
fn parse_rev(text: &str) -> Result<RevId, String> {
    text.parse().map_err(|e: Error| e.message)
}

/// The exit code of an error kind (documented in EXIT_CODES).
fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => 3,
        ErrorKind::Conflict => 4,
        ErrorKind::InvalidInput => 5,
        ErrorKind::AlreadyExists => 6,
        ErrorKind::TooLarge => 7,
        ErrorKind::Corrupt => 8,
        ErrorKind::Unauthorized => 9,
        ErrorKind::Forbidden => 10,
        ErrorKind::Unavailable => 11,
        _ => 1,
    }
}

/// Every command and subcommand documents the exit codes in its long help.
fn with_exit_codes(cmd: clap::Command) -> clap::Command {
    cmd.after_long_help(EXIT_CODES).mut_subcommands(with_exit_codes)
}

async fn run(cli: Cli) -> outpost_api::Result<ExitCode> {
    let json = cli.json;
    locator::set_postgres_db(cli.postgres_db);
    remote::configure(cli.token_file.as_deref(), cli.ca_file)?;
    match cli.command {
        Command::Serve(args) => {
            let publish = args.publish_every.map(|every| outpost_server::PublishSchedule {
                every,
                interval: args.publish_interval.map(std::time::Duration::from_secs),
                snapshot_every: args.publish_snapshot_every,
                deltas_after_snapshot: args.publish_deltas_after_snapshot,
            });
            let flags = serve::Flags {
                config: args.config,
                compact_every: (args.compact_every > 0).then(|| std::time::Duration::from_secs(args.compact_every)),
                data: args.data,
                postgres: args.postgres,
                listen: args.listen,
                quicksync: args.quicksync,
            };
            serve::run(flags, publish).await?
        }
        Command::Demo { keep } => return demo::run(json, keep).await,
        Command::Token(cmd) => token::run(cmd, json)?,
        Command::Cert(cmd) => cert::run(cmd, json)?,
        Command::Db(cmd) => return db::run(cmd, json).await,
        Command::Table(cmd) => tables::run(cmd, json).await?,
        Command::Put(args) => records::put(args, json).await?,
        Command::Get(args) => records::get(args, json).await?,
        Command::Delete(args) => records::delete(args, json).await?,
        Command::Ls(args) => records::ls(args, json).await?,
        Command::Changes(args) => records::changes(args, json).await?,
        Command::Sync(args) => sync::run(args, json).await?,
        Command::Quicksync(cmd) => quicksync::run(cmd, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let matches = with_exit_codes(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The demo provokes what the engine warns about (a forked copy) and narrates it itself.
    let quiet = if matches!(cli.command, Command::Demo { .. }) { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    // Blocking work (SQLite calls, parsing and encoding bodies) on at most two threads per core: more
    // only adds contention, and each thread that allocates keeps a malloc arena of its own (a 1M-record
    // sync peaked at 62 MB with the default 512, 48 MB with 4, in less time).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2 * cores)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: internal: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let current = e.current_rev.map(|r| format!(" (current rev: {r})")).unwrap_or_default();
            let hint = match e.kind {
                ErrorKind::Unauthorized if !remote::has_token() => {
                    " (no access token was given: set OUTPOST_TOKEN or pass --token-file FILE)"
                }
                _ => "",
            };
            eprintln!("error: {}: {}{current}{hint}", e.kind, e.message);
            ExitCode::from(exit_code(e.kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        with_exit_codes(Cli::command()).debug_assert();
    }

    #[test]
    fn every_error_kind_has_its_own_exit_code() {
        let codes: std::collections::HashSet<u8> = ErrorKind::ALL.iter().map(|k| exit_code(*k)).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert!(!codes.contains(&0) && !codes.contains(&2), "0 is success and 2 is clap's usage error");
        for kind in ErrorKind::ALL {
            let code = exit_code(kind).to_string();
            assert!(EXIT_CODES.lines().any(|l| l.trim_start().starts_with(&format!("{code} "))), "{kind} documented");
        }
    }
}
