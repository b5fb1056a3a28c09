//! `outpost table …`: create, list and show tables.

use std::collections::BTreeMap;

use outpost_api::{Attributes, Error, Limits, NewTable, Result};

use crate::locator::Locator;
use crate::{attrs, output, TableCommand, TableCreateArgs};

pub async fn run(cmd: TableCommand, json: bool) -> Result<()> {
    match cmd {
        TableCommand::Create(args) => create(args, json).await,
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
