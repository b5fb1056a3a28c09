//! `outpost table …`: create, list, show and update tables.

use std::collections::BTreeMap;

use clap::Args;
use outpost_api::{Attributes, Error, Limits, NewTable, Result, TableUpdate};

use crate::locator::Locator;
use crate::{attrs, output, PolicyArg, TableCommand, TableCreateArgs};

pub async fn run(cmd: TableCommand, json: bool) -> Result<()> {
    match cmd {
        TableCommand::Create(args) => create(args, json).await,
        TableCommand::Update(args) => update(args, json).await,
        TableCommand::List { db } => {
            let db = db.parse::<Locator>()?.open(Limits::default()).await?;
            let tables = db.database().list_tables().await?;
            if json {
                output::emit_json(&tables)
            } else if tables.is_empty() {
                output::note("no tables");
                Ok(())
            } else {
                output::emit(&output::tables_human(&tables))
            }
        }
        TableCommand::Show { db, name } => {
            let db = db.parse::<Locator>()?.open(Limits::default()).await?;
            let def = db.database().get_table(&name).await?;
            if json {
                output::emit_json(&def)
            } else {
                output::emit(&output::table_human(&def))
            }
        }
    }
}

async fn create(args: TableCreateArgs, json: bool) -> Result<()> {
    let metadata = match &args.metadata {
        Some(text) => attrs::parse_plain(text, "--metadata")?,
        None => Attributes::new(),
    };
    let mut fields = BTreeMap::new();
    for (name, decl) in args.fields {
        if fields.insert(name.clone(), decl).is_some() {
            return Err(Error::invalid(format!("field {name:?} is declared twice")));
        }
    }
    let db = args.db.parse::<Locator>()?.open(Limits::default()).await?;
    let new = NewTable {
        name: args.name,
        description: args.description,
        created_by: args.created_by.unwrap_or_default(),
        policy: args.policy.into(),
        fields,
        metadata,
        keep_bodies: args.keep_bodies,
        couch: args.couch,
    };
    let def = db.database().create_table(new).await?;
    if json {
        output::emit_json(&def)
    } else {
        output::emit(&output::table_human(&def))
    }
}

/// `outpost table update`.
#[derive(Args, Debug)]
pub struct TableUpdateArgs {
    /// The database locator (a SQLite file path, postgres:// URL with --db, or http(s)://…/dbs/NAME).
    db: String,
    /// The table name.
    name: String,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// New reconcile policy.
    #[arg(long, value_enum)]
    policy: Option<PolicyArg>,
    /// Have the server compact the table on its schedule, keeping bodies this many generations below
    /// every leaf.
    #[arg(long, value_name = "N", conflicts_with = "keep_all_bodies")]
    keep_bodies: Option<u64>,
    /// Keep every body again (no scheduled compaction of this table).
    #[arg(long)]
    keep_all_bodies: bool,
    /// Open the table to CouchDB-protocol peers such as PouchDB (needs keep-conflicts).
    #[arg(long, conflicts_with = "no_couch")]
    couch: bool,
    /// Close the table to CouchDB-protocol peers.
    #[arg(long)]
    no_couch: bool,
}

async fn update(args: TableUpdateArgs, json: bool) -> Result<()> {
    let keep_bodies = match (args.keep_bodies, args.keep_all_bodies) {
        (Some(n), _) => Some(Some(n)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let couch = match (args.couch, args.no_couch) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let update = TableUpdate {
        description: args.description,
        policy: args.policy.map(Into::into),
        keep_bodies,
        couch,
        ..TableUpdate::default()
    };
    if update == TableUpdate::default() {
        return Err(Error::invalid(
            "nothing to change: give --description, --policy, --keep-bodies, --keep-all-bodies, --couch or --no-couch",
        ));
    }
    let db = args.db.parse::<Locator>()?.open(Limits::default()).await?;
    let def = db.database().update_table(&args.name, update).await?;
    if json {
        output::emit_json(&def)
    } else {
        output::emit(&output::table_human(&def))
    }
}
