//! Tests of the quicksync file format: writing, reading, and every way a damaged file is refused.

use outpost_api::{Attributes, Body, RevId, RevisionData, Value};

use super::*;

fn events(start: u64, end: u64, prev: ChainHash) -> Vec<RevisionEvent> {
    let mut chain = prev;
    (start..=end)
        .map(|seq| {
            let rev: RevId = format!("1-{seq:032x}").parse().unwrap();
            let id = format!("r{seq}");
            // Every third event is foreign (SPEC §3): its chain hash commits to its digest.
            let foreign = (seq % 3 == 0).then_some(outpost_api::Digest([seq as u8; 16]));
            chain = chain.next_event(seq, ("t", &id, &rev, seq % 5 == 0), foreign.as_ref());
            RevisionEvent {
                seq,
                chain,
                revision: RevisionData {
                    table: "t".into(),
                    id,
                    rev,
                    deleted: seq % 5 == 0,
                    attributes: Some(Body::new(&Attributes::new().with("n", Value::Int(seq as i64)))),
                    ancestry: vec![],
                    foreign,
                },
            }
        })
        .collect()
}

fn row(local_seq: u64) -> KnowledgeRow {
    KnowledgeRow { peer: Uuid::nil(), peer_seq: 9, peer_chain: ChainHash([9; 32]), local_seq, via: None }
}

fn file(start: u64, end: u64) -> (Vec<u8>, Written, Vec<RevisionEvent>) {
    let prev = ChainHash([7; 32]);
    let header = Header::new(Kind::Delta, Uuid::nil(), start, end, prev);
    let evs = events(start, end, prev);
    let mut w = Writer::new(Vec::new(), header, 3).unwrap();
    for e in &evs {
        w.event(e).unwrap();
    }
    w.knowledge(&row(end)).unwrap();
    let (written, bytes) = w.finish().unwrap();
    (bytes, written, evs)
}

fn read_all(bytes: &[u8]) -> Result<(Vec<Item>, Trailer)> {
    let mut r = Reader::new(bytes)?;
    let mut items = Vec::new();
    while let Some(item) = r.next_item()? {
        items.push(item);
    }
    let trailer = r.trailer().cloned().unwrap();
    // Reading only the events' keys (what verifying a file does) finds the same file sound.
    assert_eq!(Reader::keys(bytes).and_then(Reader::verify).as_ref(), Ok(&trailer), "the key reader agrees");
    Ok((items, trailer))
}

/// Whether the reader of keys only refuses `bytes` (it must whenever the whole reader does).
fn keys_refuse(bytes: &[u8]) -> bool {
    Reader::keys(bytes).and_then(Reader::verify).is_err()
}

#[test]
fn a_file_reads_back_what_was_written() {
    let (bytes, written, evs) = file(11, 60);
    assert_eq!(written.bytes, bytes.len() as u64);
    assert_eq!(written.blake3, blake3::hash(&bytes).to_hex().to_string());
    let (items, trailer) = read_all(&bytes).unwrap();
    assert_eq!(trailer, written.trailer);
    assert_eq!((trailer.events, trailer.knowledge, trailer.end_chain), (50, 1, evs.last().unwrap().chain));
    let keys: Vec<(u64, ChainHash, String, RevId, bool)> = {
        let mut r = Reader::keys(&bytes[..]).unwrap();
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            if let Item::Event(EventKey { seq, chain, revision: k }) = item {
                out.push((seq, chain, k.id, k.rev, k.deleted));
            }
        }
        out
    };
    let from_events: Vec<_> =
        evs.iter().map(|e| (e.seq, e.chain, e.revision.id.clone(), e.revision.rev, e.revision.deleted)).collect();
    assert_eq!(keys, from_events);
    let mut expected: Vec<Item> = evs.into_iter().map(Item::Event).collect();
    expected.push(Item::Knowledge(row(60)));
    assert_eq!(items, expected);
}

#[test]
fn the_writer_refuses_what_would_make_a_bad_file() {
    let prev = ChainHash([7; 32]);
    let evs = events(1, 3, prev);
    let new = || Writer::new(Vec::new(), Header::new(Kind::Delta, Uuid::nil(), 1, 3, prev), 1).unwrap();
    let mut w = new();
    assert!(w.event(&evs[1]).is_err(), "a gap");
    let mut w = new();
    let mut lying = evs[0].clone();
    lying.chain = ChainHash([0; 32]);
    assert!(w.event(&lying).is_err(), "a chain that does not follow");
    let mut w = new();
    w.event(&evs[0]).unwrap();
    assert!(w.finish().is_err(), "ends before the promised seq");
    let mut w = new();
    assert!(w.knowledge(&row(4)).is_err(), "a row after the end");
    assert!(Writer::new(Vec::new(), Header::new(Kind::Snapshot, Uuid::nil(), 2, 3, prev), 1).is_err());
}

#[test]
fn damaged_files_are_refused() {
    let (bytes, _, _) = file(1, 200);
    for cut in [0, 4, bytes.len() / 2, bytes.len() - 1] {
        assert!(read_all(&bytes[..cut]).is_err(), "truncated at {cut}");
        assert!(keys_refuse(&bytes[..cut]), "truncated at {cut}, read for keys");
    }
    let mut any_flip_passed = false;
    for at in (0..bytes.len()).step_by(7) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x20;
        // zstd frames carry a checksum of their content only when asked; a flip that still decodes
        // to the same lines would not matter, but one that changes a line must fail the chain.
        if let Ok((items, _)) = read_all(&flipped) {
            let (original, _) = read_all(&bytes).unwrap();
            any_flip_passed |= items != original;
        }
    }
    assert!(!any_flip_passed, "a flipped byte changed the content and still verified");
}

/// Build a file from raw lines (to forge what a writer would refuse).
fn forged(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\n");
    text.push('\n');
    zstd::encode_all(text.as_bytes(), 1).unwrap()
}

#[test]
fn forged_content_is_refused() {
    let prev = ChainHash([7; 32]);
    let header =
        serde_json::to_string(&Line::<(), (), _, ()>::Header(Header::new(Kind::Delta, Uuid::nil(), 1, 3, prev)))
            .unwrap();
    let evs = events(1, 3, prev);
    let ev = |e: &RevisionEvent| serde_json::to_string(&Line::<_, (), (), ()>::Event(e)).unwrap();
    let trailer = |t: Trailer| serde_json::to_string(&Line::<(), (), (), _>::Trailer(t)).unwrap();
    let good_trailer = Trailer { events: 3, knowledge: 0, end_chain: evs[2].chain };
    let good = [header.clone(), ev(&evs[0]), ev(&evs[1]), ev(&evs[2]), trailer(good_trailer.clone())];
    assert!(read_all(&forged(&good)).is_ok());
    let mut renamed = evs[1].clone();
    renamed.revision.id = "other".into();
    let (mut redigested, mut undigested, mut digested) = (evs[2].clone(), evs[2].clone(), evs[1].clone());
    redigested.revision.foreign = Some(outpost_api::Digest([0xee; 16]));
    undigested.revision.foreign = None;
    digested.revision.foreign = Some(outpost_api::Digest([2; 16]));
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "a changed digest",
            vec![header.clone(), ev(&evs[0]), ev(&evs[1]), ev(&redigested), trailer(good_trailer.clone())],
        ),
        (
            "a digest dropped",
            vec![header.clone(), ev(&evs[0]), ev(&evs[1]), ev(&undigested), trailer(good_trailer.clone())],
        ),
        (
            "a digest added",
            vec![header.clone(), ev(&evs[0]), ev(&digested), ev(&evs[2]), trailer(good_trailer.clone())],
        ),
        ("a changed id", vec![header.clone(), ev(&evs[0]), ev(&renamed), ev(&evs[2]), trailer(good_trailer.clone())]),
        ("a missing event", vec![header.clone(), ev(&evs[0]), ev(&evs[2]), trailer(good_trailer.clone())]),
        (
            "a trailer that lies",
            vec![
                header.clone(),
                ev(&evs[0]),
                ev(&evs[1]),
                ev(&evs[2]),
                trailer(Trailer { events: 4, ..good_trailer.clone() }),
            ],
        ),
        ("no trailer", vec![header.clone(), ev(&evs[0]), ev(&evs[1]), ev(&evs[2])]),
        ("after the trailer", [&good[..], &[ev(&evs[2])]].concat()),
        ("no header", good[1..].to_vec()),
        ("not json", vec![header.clone(), "{\"event\": ".into()]),
    ];
    for (what, lines) in cases {
        assert!(read_all(&forged(&lines)).is_err(), "{what}");
        assert!(keys_refuse(&forged(&lines)), "{what}, read for keys");
    }
    // A body that is not JSON is refused by the key reader too (skipped, but as JSON).
    let broken_body = ev(&evs[1]).replace("{\"n\":", "{\"n\" ");
    assert_ne!(broken_body, ev(&evs[1]));
    let lines = [header.clone(), ev(&evs[0]), broken_body, ev(&evs[2]), trailer(good_trailer.clone())];
    assert!(keys_refuse(&forged(&lines)), "a broken body, read for keys");
    // A body that is not an object, and an ancestry that is not a list of ids, are refused unread.
    for (what, from, to) in [
        ("a body that is a number", "\"attributes\":{", "\"attributes\":5,\"x\":{"),
        ("an ancestry that is an object", "\"ancestry\":[]", "\"ancestry\":{}"),
    ] {
        let bad = ev(&evs[1]).replacen(from, to, 1);
        assert_ne!(bad, ev(&evs[1]), "{what}");
        let lines = [header.clone(), ev(&evs[0]), bad, ev(&evs[2]), trailer(good_trailer.clone())];
        assert!(read_all(&forged(&lines)).is_err(), "{what}");
        assert!(keys_refuse(&forged(&lines)), "{what}, read for keys");
    }
    assert!(Reader::new(&b"plain text"[..]).is_err(), "not zstd");
    let future = header.replace("\"version\":2", "\"version\":3");
    assert_ne!(future, header);
    let e = Reader::new(&forged(&[future])[..]).err().unwrap();
    assert!(e.message.contains("version 3"), "{e}");
    // Version 1 (before foreign revisions) reads as it always did.
    let v1 = header.replace("\"version\":2", "\"version\":1");
    let natives = events(1, 2, prev).into_iter().map(|e| ev(&e)).collect::<Vec<_>>();
    let v1_trailer = Trailer { events: 2, knowledge: 0, end_chain: events(1, 2, prev)[1].chain };
    let v1_header = v1.replace("\"end_seq\":3", "\"end_seq\":2");
    let lines = [v1_header, natives[0].clone(), natives[1].clone(), trailer(v1_trailer)];
    assert!(read_all(&forged(&lines)).is_ok(), "a version-1 file");
}

#[test]
fn a_header_past_the_largest_seq_is_refused() {
    // A seq is at most i64::MAX (SPEC §13); a header naming u64::MAX once overflowed the reader's
    // end-of-file check (found by review of the fuzz target's assertions).
    for end in [i64::MAX as u64 + 1, u64::MAX] {
        let header = Header::new(Kind::Snapshot, Uuid::nil(), 1, end, ChainHash([0; 32]));
        let line = serde_json::to_string(&Line::<(), (), _, ()>::Header(header)).unwrap();
        let e = Reader::new(&forged(&[line])[..]).err().expect("refused");
        assert_eq!(e.kind, outpost_api::ErrorKind::Corrupt, "{e}");
        assert!(e.message.contains("largest seq"), "{e}");
    }
}

#[test]
fn event_lines_written_otherwise_read_as_the_same_events() {
    // The writer's lines are read the fast way; a line with other spacing, another field order or an
    // escaped string is read through serde, as the same event.
    let prev = ChainHash([7; 32]);
    let header =
        serde_json::to_string(&Line::<(), (), _, ()>::Header(Header::new(Kind::Delta, Uuid::nil(), 1, 3, prev)))
            .unwrap();
    let evs = events(1, 3, prev);
    let line = |e: &RevisionEvent| serde_json::to_string(&Line::<_, (), (), ()>::Event(e)).unwrap();
    let spaced = serde_json::to_string_pretty(&Line::<_, (), (), ()>::Event(&evs[0])).unwrap().replace('\n', " ");
    let reordered = line(&evs[1]).replace(r#""table":"t","id":"r2""#, r#""id":"r2","table":"t""#);
    let escaped = line(&evs[2]).replace(r#""id":"r3""#, r#""id":"\u0072\u0033""#);
    assert!(RevisionEvent::read_fast(&format!("{}\n", line(&evs[0]))).is_some(), "the writer's line, the fast way");
    for other in [&spaced, &reordered, &escaped] {
        assert!(RevisionEvent::read_fast(&format!("{other}\n")).is_none(), "{other}");
    }
    let trailer = Trailer { events: 3, knowledge: 0, end_chain: evs[2].chain };
    let trailer = serde_json::to_string(&Line::<(), (), (), _>::Trailer(trailer)).unwrap();
    let (items, _) = read_all(&forged(&[header, spaced, reordered, escaped, trailer])).unwrap();
    assert_eq!(items, evs.into_iter().map(Item::Event).collect::<Vec<_>>());
}
