//! The requests of a pass sized for the peer (SPEC §18: replication splits requests by bytes, so deep
//! histories never exceed request limits). A page of the feed names at most a batch of records, but
//! one record with a long history can bring thousands of ancestors and megabytes of bodies: every
//! list a pass sends (revs-diff, revs/get, revs/put) is cut into parts of at most a batch of entries
//! and about [`Options::max_request_bytes`] of JSON, a single record's revisions across several parts
//! when they alone are over it. What a peer answers is bounded by the peer: a revs/get answer over
//! the client's response cap (TooLarge) is asked for again in halves, down to one revision.

use outpost_api::{json_len, Error, ErrorKind, RecordRevs, Result, RevisionData};

use crate::pass::{Source, Target};
use crate::Options;

/// Default [`Options::max_request_bytes`]: half the request body a server takes by default
/// (`Limits::max_request_bytes`, 16 MiB), the rest being room for what the estimate leaves out.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 << 20;

/// About how many bytes `r` adds to a request: its ids and each revision id (`"1-<32 hex>",`).
fn revs_size(r: &RecordRevs) -> usize {
    ids_size(r) + 37 * r.revs.len()
}

/// The part of [`revs_size`] that is not the revisions.
fn ids_size(r: &RecordRevs) -> usize {
    48 + r.table.len() + r.id.len()
}

/// How many bytes `r` adds to a request: its JSON, counted without writing it.
fn revision_size(r: &RevisionData) -> usize {
    json_len(r) as usize + 1
}

/// `items` cut in order into parts of at most `count` items and `bytes` bytes by `size` (an item over
/// `bytes` alone in its part). Never an empty part.
fn parts<T>(items: Vec<T>, count: usize, bytes: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(part) if part.len() < count && used + n <= bytes => {
                used += n;
                part.push(item);
            }
            _ => {
                used = n;
                out.push(vec![item]);
            }
        }
    }
    out
}

/// Record lists in parts: a record whose revisions alone are over the budget becomes several entries
/// of the same record first (revs-diff and revs/get answer per revision, so the parts' answers
/// together are the whole's).
fn revs_parts(items: Vec<RecordRevs>, options: &Options) -> Vec<Vec<RecordRevs>> {
    let budget = options.max_request_bytes.max(1);
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        if revs_size(&item) <= budget || item.revs.is_empty() {
            entries.push(item);
            continue;
        }
        let per_entry = (budget.saturating_sub(ids_size(&item)) / 37).max(1);
        for revs in item.revs.chunks(per_entry) {
            entries.push(RecordRevs { table: item.table.clone(), id: item.id.clone(), revs: revs.to_vec() });
        }
    }
    parts(entries, options.batch_size, budget, revs_size)
}

/// Replicated revisions in parts of at most a batch and about the byte budget, in order. `total` is
/// their JSON's size as fetched: revisions that fit the budget together are not measured one by one.
pub(crate) fn revision_parts(revisions: Vec<RevisionData>, total: u64, options: &Options) -> Vec<Vec<RevisionData>> {
    let budget = options.max_request_bytes.max(1);
    if total <= budget as u64 {
        return parts(revisions, options.batch_size, usize::MAX, |_| 0);
    }
    parts(revisions, options.batch_size, budget, revision_size)
}

/// `revs_diff` of `have`, a part at a time.
pub(crate) async fn revs_diff<T: Target + ?Sized>(
    target: &T,
    have: Vec<RecordRevs>,
    options: &Options,
    requests: &mut u64,
) -> Result<Vec<RecordRevs>> {
    let mut missing = Vec::new();
    for part in revs_parts(have, options) {
        *requests += 1;
        missing.extend(target.revs_diff(part).await?);
    }
    Ok(missing)
}

/// `get_revisions_sized` of `wanted`, a part at a time, in order; a part whose answer is over what
/// the client takes (TooLarge) is asked for again in halves, down to a single revision, which then
/// fails with what it is.
pub(crate) async fn get_revisions<S: Source + ?Sized>(
    source: &S,
    wanted: Vec<RecordRevs>,
    options: &Options,
    requests: &mut u64,
) -> Result<(Vec<RevisionData>, u64)> {
    let (mut revisions, mut bytes) = (Vec::new(), 0);
    // Parts still to ask for, the next one last.
    let mut pending: Vec<Vec<RecordRevs>> = revs_parts(wanted, options).into_iter().rev().collect();
    while let Some(part) = pending.pop() {
        *requests += 1;
        match source.get_revisions_sized(part.clone()).await {
            Ok((got, size)) => {
                revisions.extend(got);
                bytes += size;
            }
            Err(e) if e.kind == ErrorKind::TooLarge => {
                let (first, second) = halves(part).ok_or_else(|| too_large_alone(e))?;
                pending.push(second);
                pending.push(first);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((revisions, bytes))
}

/// A record list cut in two, by records or, for one record, by its revisions; `None` for a single
/// revision.
fn halves(mut part: Vec<RecordRevs>) -> Option<(Vec<RecordRevs>, Vec<RecordRevs>)> {
    if part.len() > 1 {
        let second = part.split_off(part.len() / 2);
        return Some((part, second));
    }
    let mut one = part.pop()?;
    if one.revs.len() < 2 {
        return None;
    }
    let rest = one.revs.split_off(one.revs.len() / 2);
    let other = RecordRevs { table: one.table.clone(), id: one.id.clone(), revs: rest };
    Some((vec![one], vec![other]))
}

fn too_large_alone(e: Error) -> Error {
    e.context("one revision's answer alone is over what this client takes (its max_response_bytes)")
}

#[cfg(test)]
mod tests {
    use outpost_api::RevId;

    use super::*;

    fn record(id: &str, revs: u64) -> RecordRevs {
        RecordRevs {
            table: "t".into(),
            id: id.into(),
            revs: (1..=revs).map(|g| RevId::new(g, [g as u8; 16])).collect(),
        }
    }

    #[test]
    fn lists_are_cut_by_count_and_by_bytes_in_order() {
        let sizes = [3, 3, 3, 10, 1, 1];
        let cut = parts(sizes.to_vec(), 2, 6, |n| *n);
        assert_eq!(cut, [vec![3, 3], vec![3], vec![10], vec![1, 1]], "an item over the budget goes alone");
        assert!(parts(Vec::<usize>::new(), 2, 6, |n| *n).is_empty());
    }

    #[test]
    fn a_record_with_a_deep_history_is_split_across_requests() {
        let options = Options { max_request_bytes: 1000, batch_size: 100, ..Options::default() };
        let cut = revs_parts(vec![record("a", 2), record("deep", 100), record("b", 1)], &options);
        assert!(cut.iter().all(|p| p.iter().map(revs_size).sum::<usize>() <= 1000), "{cut:?}");
        let deep: Vec<RevId> = cut.iter().flatten().filter(|r| r.id == "deep").flat_map(|r| r.revs.clone()).collect();
        assert_eq!(deep, record("deep", 100).revs, "every revision once, in order");
        let ids: Vec<&str> = cut.iter().flatten().map(|r| r.id.as_str()).collect();
        assert_eq!((ids.first(), ids.last()), (Some(&"a"), Some(&"b")));
    }

    #[test]
    fn halves_go_down_to_one_revision() {
        let (a, b) = halves(vec![record("x", 1), record("y", 1), record("z", 1)]).expect("records");
        assert_eq!((a.len(), b.len()), (1, 2));
        let (a, b) = halves(vec![record("x", 5)]).expect("revisions of one record");
        assert_eq!((a[0].revs.len(), b[0].revs.len()), (2, 3));
        assert!(halves(vec![record("x", 1)]).is_none());
    }
}
