//! What the fast reader of revisions takes reads, through `serde`, as the same revisions: the
//! fields, and each body's canonical bytes, stored JSON and depth.

use proptest::prelude::*;

use super::*;
use crate::wire::tests::{text, value};
use crate::{revisions_from_json, Attributes, ChainHash, Digest, RevisionJson};
use crate::{Change, ChangesPage};

fn revision() -> impl Strategy<Value = RevisionData> {
    let rev = (1u64..1000, any::<[u8; 16]>()).prop_map(|(g, h)| RevId::new(g, h));
    let body = proptest::collection::btree_map("[a-z]{1,6}", value(), 0..4).prop_map(Attributes);
    (
        text(),
        prop_oneof![text(), "[a-z0-9-]{1,20}"],
        rev.clone(),
        any::<bool>(),
        proptest::option::of(body),
        proptest::collection::vec(rev, 0..3),
        proptest::option::of(any::<[u8; 16]>().prop_map(Digest)),
    )
        .prop_map(|(table, id, rev, deleted, attributes, ancestry, foreign)| RevisionData {
            table,
            id,
            rev,
            deleted,
            attributes: attributes.map(|a| Body::new(&a)),
            ancestry,
            foreign,
        })
}

/// Equal revisions, bodies compared by their stored JSON and depth too.
fn exact(a: &[RevisionData], b: &[RevisionData]) -> bool {
    let bodies = |r: &[RevisionData]| -> Vec<Option<(String, usize)>> {
        r.iter().map(|r| r.attributes.as_ref().map(|b| (b.json().to_owned(), b.depth()))).collect()
    };
    a == b && bodies(a) == bodies(b)
}

/// `text` with one edit at `at` (a byte position, moved back to a character boundary).
fn edited(text: &str, at: usize, edit: u8, with: &str) -> String {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let next = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
    match edit % 3 {
        0 => format!("{}{with}{}", &text[..at], &text[at..]),
        1 => format!("{}{}", &text[..at], &text[next..]),
        _ => format!("{}{with}{}", &text[..at], &text[next..]),
    }
}

fn edit() -> impl Strategy<Value = (usize, u8, &'static str)> {
    let with = prop_oneof![
        Just(" "),
        Just("\""),
        Just("\\"),
        Just(","),
        Just("{"),
        Just("}"),
        Just("]"),
        Just("0"),
        Just("-"),
        Just("a"),
        Just("null"),
        Just("\u{1}"),
        Just("é"),
        Just(".5"),
    ];
    (any::<usize>(), any::<u8>(), with)
}

proptest! {
    #[test]
    fn a_page_as_outpost_writes_it_is_read_the_fast_way_and_any_other_text_as_serde_reads_it(
        page in proptest::collection::vec(revision(), 0..4),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let json = serde_json::to_string(&page).unwrap();
        // A source writes the stored JSON as it is (`RevisionJson`): the same text.
        let sent: Vec<RevisionJson> = page.iter().cloned().map(RevisionJson::encode).collect();
        prop_assert_eq!(&serde_json::to_string(&sent).unwrap(), &json);
        let plain = page.iter().all(|r| !(r.table.bytes().chain(r.id.bytes())).any(|b| b == b'"' || b == b'\\' || b < 0x20));
        match revisions(&json) {
            Some(read) => prop_assert!(exact(&read, &page), "{json}"),
            None => prop_assert!(!plain, "unescaped text is read the fast way: {json}"),
        }
        let mut text = json;
        for (at, edit, with) in edits {
            text = edited(&text, at, edit, with);
        }
        if let Some(fast) = revisions(&text) {
            let read: Vec<RevisionData> = serde_json::from_str(&text).expect("serde takes what the fast way takes");
            prop_assert!(exact(&fast, &read), "{text}");
        }
        match (revisions_from_json(&text), serde_json::from_str::<Vec<RevisionData>>(&text)) {
            (Ok(a), Ok(b)) => prop_assert!(exact(&a, &b)),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "{text}: {a:?} but {b:?}"),
        }
    }

    #[test]
    fn an_event_as_outpost_writes_it_is_read_the_fast_way_and_its_length_is_its_text(
        seq in any::<u64>(),
        chain in any::<[u8; 32]>(),
        revision in revision(),
        after in "[,}\\]]{0,2}",
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let event = RevisionEvent { seq, chain: ChainHash(chain), revision };
        let json = serde_json::to_string(&event).unwrap();
        let text = format!("{json}{after}");
        let r = &event.revision;
        let plain = !(r.table.bytes().chain(r.id.bytes())).any(|b| b == b'"' || b == b'\\' || b < 0x20);
        prop_assert_eq!(event_prefix(&text).is_some(), plain, "{}", text);
        if let Some((read, len)) = event_prefix(&text) {
            prop_assert_eq!(len, json.len());
            prop_assert!(exact(std::slice::from_ref(&read.revision), std::slice::from_ref(&event.revision)));
            prop_assert_eq!((read.seq, read.chain), (event.seq, event.chain));
        }
        let mut text = json;
        for (at, edit, with) in edits {
            text = edited(&text, at, edit, with);
        }
        if let Some((fast, len)) = event_prefix(&text) {
            let read: RevisionEvent = serde_json::from_str(&text[..len]).expect("serde takes what the fast way takes");
            prop_assert!(exact(std::slice::from_ref(&fast.revision), std::slice::from_ref(&read.revision)), "{text}");
            prop_assert_eq!((fast.seq, fast.chain), (read.seq, read.chain));
        }
    }
}

#[test]
fn what_is_not_as_outpost_writes_it_is_left_to_serde() {
    let rev = "1-0123456789abcdef0123456789abcdef";
    let page = |r: &str| format!("[{r}]");
    let ok = format!(r#"{{"table":"t","id":"a","rev":"{rev}","deleted":false,"attributes":{{}},"ancestry":[]}}"#);
    assert!(revisions(&page(&ok)).is_some());
    for other in [
        // Spacing, order, `null` for an absent body, escapes, a body out of order, a field unknown.
        ok.replace(",\"id\"", ", \"id\""),
        ok.replace(r#""table":"t","id":"a""#, r#""id":"a","table":"t""#),
        ok.replace(r#""attributes":{}"#, r#""attributes":null"#),
        ok.replace(r#""id":"a""#, r#""id":"\u0061""#),
        ok.replace(r#""attributes":{}"#, r#""attributes":{"b":{"int":"1"},"a":{"int":"2"}}"#),
        ok.replace(r#""ancestry":[]"#, r#""ancestry":[],"x":1"#),
    ] {
        assert!(revisions(&page(&other)).is_none(), "{other}");
        let read: Vec<RevisionData> = serde_json::from_str(&page(&other)).unwrap();
        assert!(exact(&revisions_from_json(&page(&other)).unwrap(), &read));
    }
    // A seq as `serde` reads no `u64`: refused there, with its message.
    for seq in ["01", "1.0", "1e3", "-1", "18446744073709551616"] {
        let event = format!(r#"{{"seq":{seq},"chain":"{}","revision":{ok}}}"#, "00".repeat(32));
        assert!(event_prefix(&event).is_none(), "{seq}");
        assert!(serde_json::from_str::<RevisionEvent>(&event).is_err(), "{seq}");
    }
}

fn change() -> impl Strategy<Value = Change> {
    let rev = (1u64..1000, any::<[u8; 16]>()).prop_map(|(g, h)| RevId::new(g, h));
    (any::<u64>(), text(), "[a-z0-9-]{1,20}", rev.clone(), any::<bool>(), proptest::collection::vec(rev, 0..3))
        .prop_map(|(seq, table, id, rev, deleted, leaves)| Change { seq, table, id, rev, deleted, leaves })
}

/// A page as a server streams it: its figures, then its entries.
fn streamed(page: &ChangesPage) -> String {
    let entries: Vec<String> = page.changes.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
    format!("{}{}]}}", page.stream_prefix(), entries.join(","))
}

proptest! {
    #[test]
    fn a_changes_page_as_a_server_streams_it_is_read_the_fast_way_and_any_other_text_as_serde_reads_it(
        entries in proptest::collection::vec(change(), 0..4),
        (last_seq, pending) in (any::<u64>(), any::<u64>()),
        last_chain in proptest::option::of(any::<[u8; 32]>().prop_map(ChainHash)),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let page = ChangesPage { changes: entries, last_seq, pending, last_chain };
        let json = streamed(&page);
        prop_assert_eq!(&serde_json::from_str::<ChangesPage>(&json).unwrap(), &page);
        let plain = page.changes.iter().all(|c| !c.table.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        let read = changes(&json);
        prop_assert_eq!(read.as_ref(), plain.then_some(&page), "{}", json);
        // Serde's own order (the entries first) is read through serde.
        let declared = serde_json::to_string(&page).unwrap();
        prop_assert!(changes(&declared).is_none());
        prop_assert_eq!(&crate::changes_from_json(&declared).unwrap(), &page);
        let mut text = json;
        for (at, edit, with) in edits {
            text = edited(&text, at, edit, with);
        }
        match (crate::changes_from_json(&text), serde_json::from_str::<ChangesPage>(&text)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "{text}: {a:?} but {b:?}"),
        }
    }
}

proptest! {
    #[test]
    fn what_a_source_streams_is_written_as_serde_writes_it(
        entry in change(),
        revision in revision(),
    ) {
        let mut out = String::new();
        entry.write_json(&mut out);
        prop_assert_eq!(&out, &serde_json::to_string(&entry).unwrap());
        let sent = RevisionJson::encode(revision);
        let mut out = String::new();
        sent.write_json(&mut out);
        prop_assert_eq!(&out, &serde_json::to_string(&sent).unwrap());
    }
}
