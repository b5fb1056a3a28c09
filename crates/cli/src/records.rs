//! `outpost put|get|delete|ls|changes`: records and the changes feed.

use outpost_api::{ChangesRequest, GetOptions, Limits, ListOptions, PutRecord, Result, WriteResult};

use crate::attrs::AttributeArgs;
use crate::locator::{Locator, OpenDatabase};
use crate::{output, ChangesArgs, DeleteArgs, GetArgs, LsArgs, PutArgs};

async fn open(db: &str) -> Result<OpenDatabase> {
    db.parse::<Locator>()?.open(Limits::default()).await
}

/// The record id and the `key=value` pairs of `put`: the first positional is the id unless it holds
/// an '=' (then it is a pair) or `--id` is given.
fn id_and_pairs(args: &mut PutArgs) -> (Option<String>, Vec<String>) {
    let mut pairs = std::mem::take(&mut args.attrs);
    let first = args.id.take();
    let id = match (args.id_flag.take(), first) {
        (Some(id), Some(first)) => {
            pairs.insert(0, first);
            Some(id)
        }
        (None, Some(first)) if first.contains('=') => {
            pairs.insert(0, first);
            None
        }
        (flag, first) => flag.or(first),
    };
    (id, pairs)
}

fn written(result: &WriteResult, json: bool, deleted: bool) -> Result<()> {
    if json {
        output::emit_json(result)
    } else {
        output::emit(&format!("{}  {}{}", result.id, result.rev, if deleted { "  deleted" } else { "" }))
    }
}

pub async fn put(mut args: PutArgs, json: bool) -> Result<()> {
    let (id, pairs) = id_and_pairs(&mut args);
    let attributes = AttributeArgs { wire: args.wire, plain: args.plain, pairs }.parse()?;
    let db = open(&args.db).await?;
    let put = PutRecord { id, rev: args.rev, attributes, resolves: args.resolves };
    let result = db.database().put_record(&args.table, put).await?;
    written(&result, json, false)
}

pub async fn get(args: GetArgs, json: bool) -> Result<()> {
    let db = open(&args.db).await?;
    let options = GetOptions { rev: args.rev, conflicts: args.conflicts, revs: args.revs };
    let record = db.database().get_record(&args.table, &args.id, options).await?;
    if json || args.plain {
        output::emit_json(&output::record_json(&record, args.plain)?)
    } else {
        output::emit(&output::record_human(&record))
    }
}

pub async fn delete(args: DeleteArgs, json: bool) -> Result<()> {
    let db = open(&args.db).await?;
    let result = db.database().delete_record(&args.table, &args.id, args.rev).await?;
    written(&result, json, true)
}

pub async fn ls(args: LsArgs, json: bool) -> Result<()> {
    let db = open(&args.db).await?;
    let options = ListOptions { after: args.after, limit: args.limit, include_deleted: args.deleted };
    let page = db.database().list_records(&args.table, options).await?;
    if json || args.plain {
        return output::emit_json(&output::page_json(&page, args.plain)?);
    }
    if !page.records.is_empty() {
        output::emit(&output::page_human(&page))?;
    }
    if let Some(next) = &page.next_after {
        output::note(&format!("more records: --after {next}"));
    }
    Ok(())
}

pub async fn changes(args: ChangesArgs, json: bool) -> Result<()> {
    let db = open(&args.db).await?;
    let request = ChangesRequest { since: args.since, limit: args.limit, tables: args.tables };
    let page = db.database().changes(request).await?;
    if json {
        return output::emit_json(&page);
    }
    if !page.changes.is_empty() {
        let lines: Vec<String> = page.changes.iter().map(output::change_line).collect();
        output::emit(&lines.join("\n"))?;
    }
    output::note(&output::changes_footer(&page));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(id: Option<&str>, flag: Option<&str>, attrs: &[&str]) -> (Option<String>, Vec<String>) {
        let mut args = PutArgs {
            db: "x".into(),
            table: "t".into(),
            id: id.map(Into::into),
            attrs: attrs.iter().map(|s| s.to_string()).collect(),
            id_flag: flag.map(Into::into),
            rev: None,
            wire: None,
            plain: None,
            resolves: vec![],
        };
        id_and_pairs(&mut args)
    }

    #[test]
    fn the_first_positional_is_the_id_unless_it_is_a_pair() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(split(Some("ann"), None, &["a=1"]), (Some("ann".into()), s(&["a=1"])));
        assert_eq!(split(Some("a=1"), None, &["b=2"]), (None, s(&["a=1", "b=2"])));
        assert_eq!(split(Some("a=1"), Some("x=y"), &[]), (Some("x=y".into()), s(&["a=1"])));
        assert_eq!(split(None, Some("ann"), &[]), (Some("ann".into()), vec![]));
        assert_eq!(split(None, None, &[]), (None, vec![]));
    }
}
