//! Reading revision trees: the rows of `_events` and `_stubs` of many records, a few dozen ids to a
//! statement, turned into trees (with parsed or stored bodies), the revision ids held, or the
//! revisions held without a body.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use outpost_api::{Error, Result, RevId};
use outpost_engine::storage::stored;
use outpost_engine::storage::RecordKey;
use outpost_engine::tree::{RevisionNode, RevisionTree};
use rusqlite::{Connection, Row};

use crate::error::SqlResultExt;

/// Records per statement when reading many: one statement's setup shared by this many ids.
pub(crate) const KEYS: usize = 50;

/// The revisions (`events` columns of `_events`, `stubs` columns of `_stubs`, each after the id) of
/// the records `keys`, up to [`KEYS`] ids of one table to a statement; `row` gets each row's table and
/// the row (the id first). Records with no revisions give no rows.
fn revision_rows(
    conn: &Connection,
    keys: &[RecordKey],
    (events, stubs): (&str, &str),
    mut row: impl FnMut(&str, &Row<'_>) -> Result<()>,
) -> Result<()> {
    let mut by_table: HashMap<&str, Vec<&str>> = HashMap::new();
    for (table, id) in keys {
        by_table.entry(table).or_default().push(id);
    }
    for (table, ids) in by_table {
        // Most tables hold no stub (only an ancestry cut short, or one naming revisions not sent, makes
        // one): then the query reads `_events` alone, half the index searches. Every caller runs in
        // one transaction (the writer's, or a read's), so the probe and the query see one snapshot.
        let mut probe = conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM _stubs WHERE tbl = ?1)").sql()?;
        let any_stub: bool = probe.query_row([table], |r| r.get(0)).sql()?;
        let stubs = any_stub.then_some(stubs);
        for chunk in ids.chunks(KEYS) {
            let per_statement = if chunk.len() == KEYS { KEYS } else { 1 };
            let mut stmt = conn.prepare_cached(&revisions_sql((events, stubs), per_statement)).sql()?;
            for ids in chunk.chunks(per_statement) {
                stmt.raw_bind_parameter(1, table).sql()?;
                for (i, id) in ids.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 2, id).sql()?;
                }
                let mut rows = stmt.raw_query();
                while let Some(r) = rows.next().sql()? {
                    row(table, r)?;
                }
            }
        }
    }
    Ok(())
}

/// The query of [`revision_rows`] for `n` ids of table `?1` (`?2`…), the stubs' part only when the
/// `stubs` columns are given: index searches only.
pub(crate) fn revisions_sql((events, stubs): (&str, Option<&str>), n: usize) -> String {
    // `?2, ?3, …`: built in one buffer (a statement is prepared, or found cached, for every page).
    let mut marks = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            marks.push_str(", ");
        }
        write!(marks, "?{}", i + 2).expect("writing to a String");
    }
    let mut sql = format!("SELECT id, {events} FROM _events WHERE tbl = ?1 AND id IN ({marks})");
    if let Some(stubs) = stubs {
        write!(sql, " UNION ALL SELECT id, {stubs} FROM _stubs WHERE tbl = ?1 AND id IN ({marks})")
            .expect("writing to a String");
    }
    sql
}

/// A blob column (or NULL) borrowed from its row.
pub(crate) fn blob<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r [u8]>> {
    row.get_ref(i)
        .and_then(|v| {
            v.as_blob_or_null().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))
        })
        .sql()
}

/// A revision id from its two columns, the generation at `i` and the hash after it (NULL is corrupt).
pub(crate) fn rev_at(row: &Row<'_>, i: usize) -> Result<RevId> {
    let generation: i64 = row.get(i).sql()?;
    stored::rev_of(generation, blob(row, i + 1)?.ok_or_else(|| Error::corrupt("a stored revision hash is NULL"))?)
}

/// A revision's parent from its hash column `i`, the revision's generation at `generation`.
pub(crate) fn parent_at(row: &Row<'_>, generation: usize, i: usize) -> Result<Option<RevId>> {
    stored::parent_of(row.get(generation).sql()?, blob(row, i)?)
}

/// A column holding a packed list of revision ids (`stored::pack_revs` with `implied`).
pub(crate) fn revs_at(row: &Row<'_>, i: usize, implied: Option<&RevId>) -> Result<Vec<RevId>> {
    stored::unpack_revs(blob(row, i)?, implied)
}

pub(crate) fn load_trees(conn: &Connection, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
    trees(conn, keys, |body, table, id, rev| stored::body(&body, table, id, rev))
}

/// The trees of `keys`, each stored body (wire JSON) turned into a node's by `body`.
pub(crate) fn trees<B>(
    conn: &Connection,
    keys: &[RecordKey],
    mut body: impl FnMut(String, &str, &str, &RevId) -> Result<B>,
) -> Result<HashMap<RecordKey, RevisionTree<B>>> {
    let mut out: HashMap<RecordKey, RevisionTree<B>> = HashMap::with_capacity(keys.len());
    let columns = ("gen, hash, parent, deleted, body, seq, digest", "gen, hash, parent, 0, NULL, NULL, NULL");
    revision_rows(conn, keys, columns, |table, row| {
        let id: String = row.get(0).sql()?;
        let rev = rev_at(row, 1)?;
        let parent = parent_at(row, 1, 3)?;
        let text = row.get::<_, Option<String>>(5).sql()?;
        let node = RevisionNode {
            parent,
            deleted: row.get(4).sql()?,
            body: text.map(|b| body(b, table, &id, &rev)).transpose()?,
            seq: row.get::<_, Option<i64>>(6).sql()?.map(|s| s as u64),
            foreign: stored::digest(blob(row, 7)?)?,
        };
        out.entry((table.to_owned(), id)).or_default().insert(rev, node);
        Ok(())
    })?;
    Ok(out)
}

/// The revision ids of each record, read from the `_events_key` index and `_stubs` alone.
pub(crate) fn held_revs(conn: &Connection, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
    let mut out: HashMap<RecordKey, HashSet<RevId>> = HashMap::with_capacity(keys.len());
    revision_rows(conn, keys, ("gen, hash", "gen, hash"), |table, row| {
        let id: String = row.get(0).sql()?;
        out.entry((table.to_owned(), id)).or_default().insert(rev_at(row, 1)?);
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn improvable_revs(conn: &Connection, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
    let mut out: HashMap<RecordKey, HashSet<RevId>> = HashMap::new();
    let columns = ("(body IS NULL AND deleted = 0) OR digest IS NOT NULL, gen, hash", "0, NULL, NULL");
    revision_rows(conn, keys, columns, |table, row| {
        if row.get::<_, bool>(1).sql()? {
            let id: String = row.get(0).sql()?;
            out.entry((table.to_owned(), id)).or_default().insert(rev_at(row, 2)?);
        }
        Ok(())
    })?;
    Ok(out)
}
