//! Reading revision trees: the rows of `_events` and `_stubs` of many records in one statement,
//! turned into trees (with parsed or stored bodies), the revision ids held, or the revisions held
//! without a body.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Object;
use outpost_api::{Result, RevId};
use outpost_engine::storage::stored::{self, rev as parse_rev};
use outpost_engine::storage::RecordKey;
use outpost_engine::tree::{RevisionNode, RevisionTree};

use crate::store::{col, seq_of, Inner};

pub(crate) async fn load_trees(
    inner: &Inner,
    client: &Object,
    keys: &[RecordKey],
) -> Result<HashMap<RecordKey, RevisionTree>> {
    trees(inner, client, keys, |text, key, rev| stored::body(text, &key.0, &key.1, rev)).await
}

/// The revision trees of `keys`, each stored body made into a `B` by `body` (parsed into attributes,
/// or kept as the wire JSON it is stored as).
pub(crate) async fn trees<B: Send + 'static>(
    inner: &Inner,
    client: &Object,
    keys: &[RecordKey],
    body: impl Fn(&str, &RecordKey, &RevId) -> Result<B> + Send + 'static,
) -> Result<HashMap<RecordKey, RevisionTree<B>>> {
    let mut out: HashMap<RecordKey, RevisionTree<B>> =
        keys.iter().map(|k| (k.clone(), RevisionTree::default())).collect();
    if keys.is_empty() {
        return Ok(out);
    }
    let tables: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows = inner.query(client, &inner.sql.load_trees, &[&tables, &ids]).await?;
    // Parsing the bodies is CPU work: off the async workers.
    outpost_engine::storage::blocking(move || {
        for row in rows {
            let key: RecordKey = (col(&row, 0)?, col(&row, 1)?);
            let rev = parse_rev(col(&row, 2)?)?;
            let parent = col::<Option<&str>>(&row, 3)?.map(parse_rev).transpose()?;
            let body = col::<Option<&str>>(&row, 5)?.map(|b| body(b, &key, &rev)).transpose()?;
            let seq = col::<Option<i64>>(&row, 6)?.map(seq_of);
            let foreign = stored::digest(col::<Option<&[u8]>>(&row, 7)?)?;
            let node = RevisionNode { parent, deleted: col(&row, 4)?, body, seq, foreign };
            out.entry(key).or_default().insert(rev, node);
        }
        Ok(out)
    })
    .await?
}

pub(crate) async fn held_revs(
    inner: &Inner,
    client: &Object,
    keys: &[RecordKey],
) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
    let mut out: HashMap<RecordKey, HashSet<RevId>> = keys.iter().map(|k| (k.clone(), HashSet::new())).collect();
    if keys.is_empty() {
        return Ok(out);
    }
    let tables: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    for row in inner.query(client, &inner.sql.held_revs, &[&tables, &ids]).await? {
        let key: RecordKey = (col(&row, 0)?, col(&row, 1)?);
        out.entry(key).or_default().insert(parse_rev(col(&row, 2)?)?);
    }
    Ok(out)
}

pub(crate) async fn improvable_revs(
    inner: &Inner,
    client: &Object,
    keys: &[RecordKey],
) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
    let mut out: HashMap<RecordKey, HashSet<RevId>> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let tables: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    for row in inner.query(client, &inner.sql.improvable_revs, &[&tables, &ids]).await? {
        let key: RecordKey = (col(&row, 0)?, col(&row, 1)?);
        out.entry(key).or_default().insert(parse_rev(col(&row, 2)?)?);
    }
    Ok(out)
}
