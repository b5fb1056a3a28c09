//! The typed value decoder (PROTOCOL.md §1): whatever decodes encodes back to the same value, its
//! canonical encoding is stable, and the body limits judge it without panicking. A `Body` read from
//! the same bytes is taken exactly when the typed parse takes them, with the same encodings (its fast
//! reader, for canonical text, and its general one alike). Read as a page of revisions, a revision
//! event or a page of the changes feed, the same bytes are taken the fast way only as `serde` takes
//! them, as the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_api::{
    changes_from_json, revisions_from_json, Attributes, Body, ChangesPage, Limits, RevisionData, RevisionEvent,
};
use outpost_engine::canonical::encode_attributes;

/// Equal revisions, bodies compared by their stored JSON and depth too.
fn exact(a: &[RevisionData], b: &[RevisionData]) -> bool {
    let bodies = |r: &[RevisionData]| -> Vec<Option<(String, usize)>> {
        r.iter().map(|r| r.attributes.as_ref().map(|b| (b.json().to_owned(), b.depth()))).collect()
    };
    a == b && bodies(a) == bodies(b)
}

fn revisions(text: &str) {
    match (revisions_from_json(text), serde_json::from_str::<Vec<RevisionData>>(text)) {
        (Ok(a), Ok(b)) => assert!(exact(&a, &b), "the same page"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "the same refusal"),
        (a, b) => panic!("{a:?} but serde {b:?}"),
    }
    match (changes_from_json(text), serde_json::from_str::<ChangesPage>(text)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the same changes page"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "the same refusal"),
        (a, b) => panic!("{a:?} but serde {b:?}"),
    }
    if let Some((fast, len)) = RevisionEvent::read_prefix(text) {
        let read: RevisionEvent = serde_json::from_str(&text[..len]).expect("serde takes what the fast way takes");
        assert!((fast.seq, fast.chain) == (read.seq, read.chain), "the same event");
        assert!(exact(&[fast.revision], &[read.revision]), "the same revision");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        revisions(text);
    }
    let body = std::str::from_utf8(data).ok().map(Body::from_json);
    let Ok(attributes) = serde_json::from_slice::<Attributes>(data) else {
        assert!(body.is_none_or(|b| b.is_err()), "a body the typed parse refuses is refused");
        return;
    };
    if let Some(body) = body {
        let body = body.expect("a body the typed parse takes is taken");
        assert_eq!(body, Body::new(&attributes), "the same canonical bytes");
        assert_eq!(body.json(), attributes.to_json(), "the same stored JSON");
        assert_eq!(body.depth(), attributes.depth(), "the same depth");
    }
    let text = serde_json::to_string(&attributes).expect("a decoded body encodes");
    let again: Attributes = serde_json::from_str(&text).expect("an encoded body decodes");
    assert_eq!(again, attributes, "the wire form round-trips");
    assert_eq!(encode_attributes(&again), encode_attributes(&attributes), "one canonical encoding");
    let _ = outpost_engine::validate::encoded(&attributes, &Limits::default());
});
