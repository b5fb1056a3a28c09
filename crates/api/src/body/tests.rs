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

/// `text` with one edit: a character inserted, removed or replaced at `at`.
fn edited(text: &str, at: usize, edit: u8, with: char) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    match edit % 3 {
        0 => chars.insert(at, with),
        1 if at < chars.len() => drop(chars.remove(at)),
        _ if at < chars.len() => chars[at] = with,
        _ => chars.push(with),
    }
    chars.into_iter().collect()
}

proptest! {
    #[test]
    fn canonical_text_is_read_the_fast_way_and_any_other_text_as_the_general_way_reads_it(
        items in proptest::collection::btree_map(text(), value(), 0..5),
        names in proptest::collection::btree_map("[a-z]{1,6}", value(), 0..5),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), prop_oneof![
            Just(' '), Just('"'), Just('\\'), Just(','), Just('{'), Just('}'), Just('0'), Just('-'), Just('a'),
            Just('u'), Just('\u{1}'), Just('é'), Just('_'),
        ]), 0..3),
    ) {
        let mut attributes = Attributes(names);
        attributes.insert("m".into(), Value::Map(items));
        let json = attributes.to_json();
        let (canonical, depth) = fast::read(&json).expect("canonical text is read the fast way");
        let made = Body::new(&attributes);
        prop_assert_eq!((canonical.as_slice(), depth), (made.canonical(), attributes.depth()));
        let mut text = json;
        for (at, edit, with) in edits {
            text = edited(&text, at, edit, with);
        }
        // Whatever the fast way takes is canonical text that the general way reads alike.
        if let Some((canonical, depth)) = fast::read(&text) {
            let general = general_text(&text).expect("the general way takes it too");
            prop_assert_eq!(general.json(), text.as_str());
            prop_assert_eq!((canonical.as_slice(), depth), (general.canonical(), general.depth()));
        }
        // And reading a body is the typed parse, encoded.
        match (Body::from_json(&text), serde_json::from_str::<Attributes>(&text)) {
            (Ok(body), Ok(typed)) => same(&body, &typed),
            (Err(_), Err(_)) => {}
            (body, typed) => prop_assert!(false, "{text}: {body:?} but {typed:?}"),
        }
    }

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
    assert!(Body::empty().json() == "{}" && Body::empty().depth() == 0);
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
    // The message without where in the text it was found.
    let message = |e: serde_json::Error| {
        let text = e.to_string();
        text.rfind(" at line ").map_or(text.clone(), |at| text[..at].to_owned())
    };
    for input in cases {
        let typed = serde_json::from_str::<Attributes>(&input.to_string()).unwrap_err();
        let body = Body::from_json(&input.to_string()).unwrap_err();
        assert_eq!(body.to_string(), typed.to_string(), "{input}: the same message, where in the text too");
        // Inside a document, read as its text first: the same message, placed at the body's end.
        let inside = serde_json::from_str::<Vec<Body>>(&format!("[{input}]")).unwrap_err();
        assert_eq!(message(inside), message(typed), "{input} inside a document");
        // From a JSON value, which a body reads as its text: refused as that text is.
        assert!(serde_json::from_value::<Attributes>(input.clone()).is_err(), "{input}");
        let body = serde_json::from_value::<Body>(input.clone()).unwrap_err().to_string();
        assert_eq!(body, message(serde_json::from_str::<Attributes>(&input.to_string()).unwrap_err()), "{input}");
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
fn text_written_otherwise_is_read_the_general_way_and_canonicalised() {
    for text in [
        r#"{"a": {"int": "1"}}"#,
        r#"{"a":{"int":"01"}}"#,
        r#"{"a":{"int":"-0"}}"#,
        r#"{"a":{"int":"+1"}}"#,
        r#"{"a":{"int":1}}"#,
        r#"{"a":{"decimal":"1.50"}}"#,
        r#"{"a":{"float":"1.0"}}"#,
        r#"{"a":{"timestamp":"2026-01-01T00:00:00.000Z"}}"#,
        r#"{"a":{"string":"\/"}}"#,
        r#"{"a":{"string":"\u0041"}}"#,
        r#"{"a":{"string":"\u001F"}}"#,
        r#"{"a":{"string":"\u000a"}}"#,
        r#"{"b":{"null":true},"a":{"null":true}}"#,
        r#"{"a":{"map":{"y":{"null":true},"x":{"null":true}}}}"#,
    ] {
        assert!(fast::read(text).is_none(), "{text} is not canonical");
        let body = Body::from_json(text).unwrap();
        let typed: Attributes = serde_json::from_str(text).unwrap();
        same(&body, &typed);
        assert!(fast::read(body.json()).is_some(), "{text} canonicalised is canonical");
    }
    for text in [r#"{"_a":{"null":true}}"#, r#"{"a":{"null":true},"a":{"null":true}}"#, r#"{"a":{"null":true}} x"#] {
        assert!(fast::read(text).is_none() && Body::from_json(text).is_err(), "{text}");
    }
    // At the deepest a body can be read back, both ways take it; one deeper, neither does.
    let nested = |depth: usize| {
        format!("{{\"a\":{}{{\"null\":true}}{}}}", "{\"list\":[".repeat(depth - 1), "]}".repeat(depth - 1))
    };
    let deepest = nested(crate::names::MAX_DEPTH);
    let typed: Attributes = serde_json::from_str(&deepest).expect("the deepest body reads");
    assert_eq!(typed.depth(), crate::names::MAX_DEPTH);
    same(&Body::from_json(&deepest).unwrap(), &typed);
    assert!(fast::read(&deepest).is_some());
    let deeper = nested(crate::names::MAX_DEPTH + 1);
    assert!(serde_json::from_str::<Attributes>(&deeper).is_err(), "past serde_json's recursion limit");
    assert!(fast::read(&deeper).is_none() && Body::from_json(&deeper).is_err());
    // Deep nesting is left to the general way, which refuses past serde_json's recursion limit.
    let deep = format!("{{\"a\":{}{{\"null\":true}}{}}}", "{\"list\":[".repeat(200), "]}".repeat(200));
    assert!(fast::read(&deep).is_none());
    assert!(Body::from_json(&deep).is_err() && serde_json::from_str::<Attributes>(&deep).is_err());
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
