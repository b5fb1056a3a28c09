//! The test vectors of docs/PROTOCOL.md, re-computed: the document and the code cannot drift apart.

use std::collections::HashMap;

use outpost_api::{Attributes, ChainHash, RevId, Uuid, Value};

use crate::canonical::encode_value;
use crate::hash::{genesis_chain, next_chain, revision_id};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compute one vector line's output; `names` holds outputs of earlier lines (REV1, GENESIS, ...).
fn compute(kind: &str, input: &str, names: &HashMap<String, String>) -> String {
    let resolve = |s: &str| names.get(s).cloned().unwrap_or_else(|| s.to_owned());
    match kind {
        "value" => {
            let v: Value = serde_json::from_str(input).expect("vector value parses");
            let mut out = Vec::new();
            encode_value(&mut out, &v);
            hex(&out)
        }
        "genesis" => hex(&genesis_chain(input.parse::<Uuid>().expect("uuid")).0),
        "rev" => {
            let parts: Vec<&str> = input.splitn(5, '|').collect();
            let parent: Option<RevId> = match resolve(parts[2]).as_str() {
                "" => None,
                p => Some(p.parse().expect("parent rev")),
            };
            let attrs: Attributes = serde_json::from_str(parts[4]).expect("attributes parse");
            revision_id(parts[0], parts[1], parent.as_ref(), parts[3] == "1", &attrs).to_string()
        }
        "chain" => {
            let p: Vec<&str> = input.split('|').collect();
            let prev: ChainHash = resolve(p[0]).parse().expect("prev chain");
            let rev: RevId = resolve(p[4]).parse().expect("rev");
            hex(&next_chain(&prev, p[1].parse().expect("seq"), p[2], p[3], &rev, p[5] == "1").0)
        }
        "foreign" => {
            let parts: Vec<&str> = input.splitn(5, '|').collect();
            let parent: Option<RevId> = match resolve(parts[2]).as_str() {
                "" => None,
                p => Some(p.parse().expect("parent rev")),
            };
            let attrs: Attributes = serde_json::from_str(parts[4]).expect("attributes parse");
            hex(&crate::foreign::digest(parts[0], parts[1], parent.as_ref(), parts[3] == "1", &attrs).0)
        }
        "chain-foreign" => {
            let p: Vec<&str> = input.split('|').collect();
            let prev: ChainHash = resolve(p[0]).parse().expect("prev chain");
            let rev: RevId = resolve(p[4]).parse().expect("rev");
            let digest: crate::foreign::Digest = resolve(p[6]).parse().expect("digest");
            let class = crate::foreign::Class::Foreign(digest);
            let event = (p[2], p[3], &rev, p[5] == "1");
            hex(&crate::foreign::next_chain(&prev, p[1].parse().expect("seq"), event, class).0)
        }
        "winner" => {
            // Leaves of one generation, without parents: the winner is the greatest id text.
            let mut tree = crate::tree::RevisionTree::new();
            for text in input.split('|') {
                let node = crate::tree::RevisionNode {
                    parent: None,
                    deleted: false,
                    body: Some(Attributes::new()),
                    seq: Some(1),
                    foreign: None,
                };
                tree.insert(text.parse().expect("rev"), node);
            }
            tree.winner().expect("a winner").to_string()
        }
        other => panic!("unknown vector kind {other}"),
    }
}

#[test]
fn protocol_vectors_hold() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md is readable");
    let block = doc.split("```vectors\n").nth(1).expect("a vectors block").split("```").next().unwrap();
    let mut names = HashMap::new();
    let (mut revs, mut chains, mut digests, mut checked) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let (kind, rest) = line.split_once(' ').expect("kind and input");
        let (input, expected) = rest.rsplit_once(" -> ").expect("input -> output");
        let actual = compute(kind, input, &names);
        let expected: String = expected.chars().filter(|c| !c.is_whitespace()).collect();
        if actual != expected {
            wrong.push(format!("{kind} {input} -> {actual}   (document says {expected})"));
        }
        checked += 1;
        match kind {
            "genesis" => {
                names.insert("GENESIS".to_owned(), actual);
            }
            "rev" => {
                revs += 1;
                names.insert(format!("REV{revs}"), actual);
            }
            "chain" | "chain-foreign" => {
                chains += 1;
                names.insert(format!("CHAIN{chains}"), actual);
            }
            "foreign" => {
                digests += 1;
                names.insert(format!("DIGEST{digests}"), actual);
            }
            _ => {}
        }
    }
    assert!(checked >= 15, "only {checked} vectors found");
    assert!(wrong.is_empty(), "vectors that do not hold:\n{}", wrong.join("\n"));
}
