//! A body read into its encodings is the typed parse encoded: the same bytes, depth and refusals.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::wire::tests::{text, value};
use crate::Value;

/// The wire JSON of `value` with every map's keys in reverse order.
fn reversed(value: &Value) -> String {
    match value {
        Value::List(items) => format!("{{\"list\":[{}]}}", items.iter().map(reversed).collect::<Vec<_>>().join(",")),
        Value::Map(items) => format!("{{\"map\":{}}}", reversed_map(items)),
        scalar => serde_json::to_string(scalar).unwrap(),
    }
}

fn reversed_map(items: &BTreeMap<String, Value>) -> String {
    let entries: Vec<String> =
        items.iter().rev().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), reversed(v))).collect();
    format!("{{{}}}", entries.join(","))
}

fn same(body: &Body, attributes: &Attributes) {
    assert_eq!(body.canonical(), crate::canonical::encode_attributes(attributes).as_slice());
    assert_eq!(body.json(), attributes.to_json());
    assert_eq!(body.depth(), attributes.depth());
}

proptest! {
    #[test]
    fn a_body_read_is_the_typed_parse_encoded(
        items in proptest::collection::btree_map(text(), value(), 0..6),
        names in proptest::collection::btree_map("[a-z]{1,6}", value(), 0..6),
    ) {
        // Any text is a key of a map value; attribute names at the top.
        let mut attributes = Attributes(names);
        attributes.insert("m".into(), Value::Map(items));
        let body = Body::from_json(&attributes.to_json()).unwrap();
        same(&body, &attributes);
        prop_assert_eq!(&body, &Body::new(&attributes));
        // Keys out of order are put in order, at every level.
        let shuffled = reversed_map(&attributes);
        prop_assert_eq!(&serde_json::from_str::<Attributes>(&shuffled).unwrap(), &attributes);
        same(&Body::from_json(&shuffled).unwrap(), &attributes);
        // From a JSON value (owned strings) alike, and written back as the JSON it holds.
        let from_value: Body = serde_json::from_value(serde_json::from_str(&shuffled).unwrap()).unwrap();
        same(&from_value, &attributes);
        prop_assert_eq!(serde_json::to_string(&body).unwrap(), attributes.to_json());
    }
}

#[test]
fn non_canonical_input_is_canonicalised_as_the_typed_parse_does() {
    let text = r#"{"i": {"int": "007"}, "z": {"int": 42}, "f": {"float": "-0.0"}, "g": {"float": 1.50},
        "d": {"decimal": "1.5e3"}, "t": {"timestamp": "2026-01-01T01:00:00.100+01:00"}, "s": {"string": "a\"\u00e9\n"},
        "y": {"bytes": "AAEC/w=="}, "n": {"null": true}, "b": {"bool": false},
        "l": {"list": [{"int": "-0"}, {"list": []}, {"map": {}}]}, "e": {"map": {"": {"string": ""}}}}"#;
    let attributes: Attributes = serde_json::from_str(text).unwrap();
    same(&Body::from_json(text).unwrap(), &attributes);
    assert_eq!(Body::from_json(text).unwrap().attributes(), attributes);
    assert_eq!(Body::from_json("{}").unwrap(), Body::empty());
    assert!(Body::empty().is_empty() && Body::empty().depth() == 0);
}

#[test]
fn invalid_input_is_refused_with_the_typed_parse_s_message() {
    let cases = [
        json!({"a": {"map": {"b": {"list": [{"int": "1"}, {"int": "x"}]}}}}),
        json!({"n": {"float": "NaN"}}),
        json!({"n": {"nope": "1"}}),
        json!({"n": {"int": "1", "float": "1"}}),
        json!({"n": {}}),
        json!({"n": {"bytes": "***"}}),
        json!({"_n": {"int": "1"}}),
        json!({"": {"int": "1"}}),
        json!({"n": {"null": false}}),
        json!({"n": {"bool": "yes"}}),
        json!({"n": {"string": 5}}),
        json!({"n": {"list": {"int": "1"}}}),
        json!({"n": {"map": [1]}}),
        json!({"n": 5}),
        json!([1]),
        json!({"a": {"list": [{"map": {"k": {"int": []}}}]}}),
        json!({"i": {"int": "18446744073709551616"}}),
    ];
    for input in cases {
        let typed = serde_json::from_str::<Attributes>(&input.to_string()).unwrap_err().to_string();
        let body = Body::from_json(&input.to_string()).unwrap_err().to_string();
        assert_eq!(body, typed, "{input}");
        let typed = serde_json::from_value::<Attributes>(input.clone()).unwrap_err().to_string();
        let body = serde_json::from_value::<Body>(input.clone()).unwrap_err().to_string();
        assert_eq!(body, typed, "{input} from a value");
    }
}

#[test]
fn a_key_given_twice_is_refused_in_order_or_not() {
    for (text, path) in [
        (r#"{"a": {"int": "1"}, "a": {"int": "2"}}"#, "\"a\""),
        (r#"{"b": {"int": "1"}, "a": {"int": "1"}, "b": {"int": "2"}}"#, "\"b\""),
        (r#"{"a": {"map": {"x": {"int": "1"}, "x": {"int": "2"}}}}"#, "\"a.x\""),
        (r#"{"a": {"map": {"y": {"int": "1"}, "x": {"null": true}, "y": {"int": "2"}}}}"#, "\"a.y\""),
    ] {
        let e = Body::from_json(text).unwrap_err().to_string();
        assert!(e.contains(&format!("attribute {path}: duplicate key")), "{text}: {e}");
        assert!(serde_json::from_str::<Attributes>(text).is_err());
    }
}

#[test]
fn depth_counts_nesting_as_attributes_do() {
    for text in [
        r#"{}"#,
        r#"{"a": {"int": "1"}}"#,
        r#"{"a": {"list": []}}"#,
        r#"{"a": {"map": {}}, "b": {"list": [{"list": [{"map": {"c": {"null": true}}}]}]}}"#,
    ] {
        let attributes: Attributes = serde_json::from_str(text).unwrap();
        assert_eq!(Body::from_json(text).unwrap().depth(), attributes.depth(), "{text}");
    }
}
