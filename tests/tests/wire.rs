//! SPEC §3 without a database: the published hash vectors re-derived from the spec's byte layout with
//! blake3 directly (and by the engine), and invalid wire input rejected at deserialisation.

use outpost_api::{Attributes, RevId, Uuid, Value};
use outpost_engine::canonical::encode_attributes;
use outpost_engine::hash::{genesis_chain, next_chain, revision_id};
use outpost_tests::vectors::{CHAIN_VECTORS, GENESIS_VECTOR, REV_VECTORS};
use serde_json::json;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn lb(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[test]
fn revision_vectors_follow_the_spec_byte_layout() {
    for v in REV_VECTORS {
        let attributes: Attributes = serde_json::from_str(v.attributes).expect("vector attributes");
        assert_eq!(hex(&encode_attributes(&attributes)), v.canonical, "canonical bytes of {v:?}");
        // The spec's preimage, built here byte by byte.
        let mut pre = b"outpost/rev/v1".to_vec();
        lb(&mut pre, v.table.as_bytes());
        lb(&mut pre, v.id.as_bytes());
        lb(&mut pre, v.parent.unwrap_or("").as_bytes());
        pre.push(v.deleted as u8);
        pre.extend_from_slice(&unhex(v.canonical));
        let generation = v.parent.map_or(1, |p| p.parse::<RevId>().expect("parent").generation + 1);
        let expected = format!("{generation}-{}", hex(&blake3::hash(&pre).as_bytes()[..16]));
        assert_eq!(expected, v.rev, "blake3 of the spec's preimage for {v:?}");
        let parent: Option<RevId> = v.parent.map(|p| p.parse().expect("parent"));
        assert_eq!(revision_id(v.table, v.id, parent.as_ref(), v.deleted, &attributes).to_string(), v.rev);
    }
}

#[test]
fn chain_vectors_follow_the_spec_byte_layout() {
    let uuid: Uuid = GENESIS_VECTOR.first_epoch.parse().expect("uuid");
    let mut pre = b"outpost/genesis/v1".to_vec();
    pre.extend_from_slice(uuid.as_bytes());
    assert_eq!(blake3::hash(&pre).to_hex().as_str(), GENESIS_VECTOR.chain);
    assert_eq!(genesis_chain(uuid).to_string(), GENESIS_VECTOR.chain);
    for v in CHAIN_VECTORS {
        let mut pre = b"outpost/chain/v1".to_vec();
        pre.extend_from_slice(&unhex(v.prev));
        pre.extend_from_slice(&v.seq.to_be_bytes());
        lb(&mut pre, v.table.as_bytes());
        lb(&mut pre, v.id.as_bytes());
        lb(&mut pre, v.rev.as_bytes());
        pre.push(v.deleted as u8);
        assert_eq!(blake3::hash(&pre).to_hex().as_str(), v.chain, "{v:?}");
        let prev = v.prev.parse().expect("chain hash");
        let rev: RevId = v.rev.parse().expect("rev");
        assert_eq!(next_chain(&prev, v.seq, v.table, v.id, &rev, v.deleted).to_string(), v.chain, "{v:?}");
    }
}

/// Each input is rejected, with an error message containing `needle`.
fn check_rejected(cases: &[(serde_json::Value, &str)]) {
    for (input, needle) in cases {
        let attributes = json!({ "a": { "map": { "b": input } } });
        match serde_json::from_value::<Attributes>(attributes) {
            Ok(v) => panic!("{input} was accepted as {v:?}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains(needle), "{input}: {message:?} does not mention {needle:?}");
                assert!(message.contains("a.b"), "{input}: {message:?} does not name the attribute path");
            }
        }
    }
}

#[test]
fn non_finite_floats_are_rejected() {
    check_rejected(&[
        (json!({"float": "NaN"}), "float"),
        (json!({"float": "nan"}), "float"),
        (json!({"float": "inf"}), "float"),
        (json!({"float": "-inf"}), "float"),
        (json!({"float": "Infinity"}), "float"),
        (json!({"float": "1e999"}), "float"),
        (json!({"float": "-1e309"}), "float"),
    ]);
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(Value::float(f).is_err(), "Value::float({f})");
    }
    assert_eq!(Value::float(-0.0).expect("-0.0"), Value::Float(0.0));
}

#[test]
fn malformed_numbers_and_scalars_are_rejected() {
    let many_digits = "1".repeat(101);
    check_rejected(&[
        (json!({"int": "1.5"}), "int"),
        (json!({"int": "9223372036854775808"}), "int"),
        (json!({"int": "-9223372036854775809"}), "int"),
        (json!({"int": "0x10"}), "int"),
        (json!({"int": "1e3"}), "int"),
        (json!({"int": ""}), "int"),
        (json!({"int": " 1"}), "int"),
        (json!({"int": "--1"}), "int"),
        (json!({"float": ""}), "float"),
        (json!({"float": "1,5"}), "float"),
        (json!({"float": "0x1p3"}), "float"),
        (json!({"decimal": "abc"}), "decimal"),
        (json!({"decimal": "1.2.3"}), "decimal"),
        (json!({"decimal": "1e"}), "decimal"),
        (json!({"decimal": "1e1001"}), "decimal"),
        (json!({"decimal": "1e-1001"}), "decimal"),
        (json!({"decimal": many_digits}), "decimal"),
        (json!({"decimal": "NaN"}), "decimal"),
        (json!({"timestamp": "2026-13-01T00:00:00Z"}), "timestamp"),
        (json!({"timestamp": "2026-01-01"}), "timestamp"),
        (json!({"timestamp": "2026-01-01T00:00:00"}), "timestamp"),
        (json!({"timestamp": "yesterday"}), "timestamp"),
        (json!({"bytes": "AAE"}), "bytes"),
        (json!({"bytes": "***"}), "bytes"),
        (json!({"bool": "yes"}), "bool"),
        (json!({"null": false}), "null"),
        (json!({"string": 5}), "string"),
        (json!({"nope": "1"}), "unknown value type"),
        (json!({"int": "1", "float": "1"}), "exactly one key"),
        (json!({}), "empty object"),
    ]);
}

#[test]
fn malformed_plain_numbers_are_rejected() {
    for text in [r#"{"n": 1e2000}"#, r#"{"n": 1e-2000}"#, &format!(r#"{{"n": {}.5}}"#, "9".repeat(120))] {
        let json: serde_json::Value = serde_json::from_str(text).expect("JSON");
        assert!(Attributes::from_plain(&json).is_err(), "{text} is rejected");
    }
    let json: serde_json::Value =
        serde_json::from_str(r#"{"n": 1.50e2, "i": -0, "big": 9223372036854775808}"#).unwrap();
    let a = Attributes::from_plain(&json).expect("valid plain numbers");
    assert_eq!(a["n"], Value::decimal("150").unwrap());
    assert_eq!(a["i"], Value::Int(0));
    assert_eq!(a["big"], Value::decimal("9223372036854775808").unwrap());
}
