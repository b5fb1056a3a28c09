//! SPEC §3: values survive storage exactly, non-canonical input is stored canonically, and revision
//! ids are the published hashes.

use outpost_api::{Attributes, Body, GetOptions, RecordRevs};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{delete, get, ok, put, rev, table, wire};
use crate::vectors::REV_VECTORS;
use crate::Factory;

/// A record holding every value type, extremes included, reads back equal, in the same wire JSON.
pub async fn every_value_type_round_trips(f: &dyn Factory) {
    let db = f.fresh().await;
    table(&*db, "things").await;
    let input = json!({
        "null": {"null": true},
        "yes": {"bool": true},
        "no": {"bool": false},
        "int_min": {"int": "-9223372036854775808"},
        "int_max": {"int": "9223372036854775807"},
        "float": {"float": "0.1"},
        "float_big": {"float": "1.7976931348623157e+308"},
        "float_tiny": {"float": "5e-324"},
        "decimal": {"decimal": "-0.000123"},
        "decimal_long": {"decimal": "1234567890123456789012345678901234567890.0987654321"},
        "string": {"string": "héllo 😀 \"quoted\" \\ \u{0} tab\t"},
        "string_nfd": {"string": "e\u{301}"},
        "empty_string": {"string": ""},
        "bytes": {"bytes": "AAEC/w=="},
        "empty_bytes": {"bytes": ""},
        "ts": {"timestamp": "1969-12-31T23:59:59.000000001Z"},
        "ts_first": {"timestamp": "0000-01-01T00:00:00Z"},
        "ts_last": {"timestamp": "9999-12-31T23:59:59.999999999Z"},
        "list": {"list": [{"int": "1"}, {"string": "x"}, {"list": []}, {"map": {}}]},
        "map": {"map": {"b": {"null": true}, "a": {"map": {"deep": {"list": [{"bool": false}]}}}, "é": {"int": "0"}}},
    });
    let body = wire(input.clone());
    let written = put(&*db, "things", "all", None, body.clone()).await;
    assert_eq!(written, revision_id("things", "all", None, false, &body), "the rev hashes the body");
    let record = get(&*db, "things", "all").await;
    assert_eq!(record.attributes, body);
    assert_eq!(serde_json::to_value(&record.attributes).unwrap(), input, "wire JSON reads back the same");
    let by_rev = ok(
        db.get_record("things", "all", GetOptions { rev: Some(written), ..GetOptions::default() }).await,
        "get by rev",
    );
    assert_eq!(by_rev.attributes, body);
}

/// Valid but non-canonical input is stored in canonical form, and the revision id hashes that form.
pub async fn non_canonical_values_come_back_canonical(f: &dyn Factory) {
    let db = f.fresh().await;
    table(&*db, "things").await;
    let cases = [
        (json!({"int": "007"}), json!({"int": "7"})),
        (json!({"int": "-0"}), json!({"int": "0"})),
        (json!({"int": "+5"}), json!({"int": "5"})),
        (json!({"int": 42}), json!({"int": "42"})),
        (json!({"float": "1.50"}), json!({"float": "1.5"})),
        (json!({"float": "-0.0"}), json!({"float": "0"})),
        (json!({"float": "2.50E2"}), json!({"float": "250"})),
        (json!({"float": "1e21"}), json!({"float": "1e+21"})),
        (json!({"float": "0.0000001"}), json!({"float": "1e-7"})),
        (json!({"decimal": "1.5e3"}), json!({"decimal": "1500"})),
        (json!({"decimal": "0012.5000"}), json!({"decimal": "12.5"})),
        (json!({"decimal": "-0.000"}), json!({"decimal": "0"})),
        (json!({"decimal": ".5"}), json!({"decimal": "0.5"})),
        (json!({"decimal": "+1E-3"}), json!({"decimal": "0.001"})),
        (json!({"timestamp": "2026-01-01T01:00:00.100+01:00"}), json!({"timestamp": "2026-01-01T00:00:00.1Z"})),
        (json!({"timestamp": "2026-06-30T23:30:00-00:30"}), json!({"timestamp": "2026-07-01T00:00:00Z"})),
        (json!({"timestamp": "2026-01-01T00:00:00.000Z"}), json!({"timestamp": "2026-01-01T00:00:00Z"})),
        (json!({"list": [{"int": "01"}, {"decimal": "2.0"}]}), json!({"list": [{"int": "1"}, {"decimal": "2"}]})),
        (
            json!({"map": {"z": {"int": "-00"}, "a": {"float": "3.0"}}}),
            json!({"map": {"a": {"float": "3"}, "z": {"int": "0"}}}),
        ),
    ];
    for (i, (input, canonical)) in cases.into_iter().enumerate() {
        let id = format!("c{i}");
        let written = put(&*db, "things", &id, None, wire(json!({ "v": input }))).await;
        let expected = wire(json!({ "v": canonical }));
        assert_eq!(
            written,
            revision_id("things", &id, None, false, &expected),
            "{input}: the rev hashes the canonical form"
        );
        let stored = get(&*db, "things", &id).await.attributes;
        assert_eq!(serde_json::to_value(&stored["v"]).unwrap(), canonical, "{input} is stored canonically");
    }
}

/// Replaying the published revision vectors on a database yields exactly the published ids, and the
/// stored revisions carry the vectors' bodies and ancestry.
pub async fn stored_revisions_match_the_hash_vectors(f: &dyn Factory) {
    let db = f.fresh().await;
    table(&*db, "orders").await;
    table(&*db, "things").await;
    for v in REV_VECTORS {
        let attributes: Attributes = serde_json::from_str(v.attributes).expect("vector attributes parse");
        let parent = v.parent.map(rev);
        assert_eq!(revision_id(v.table, v.id, parent.as_ref(), v.deleted, &attributes).to_string(), v.rev, "{v:?}");
        let stored = if v.deleted {
            delete(&*db, v.table, v.id, parent).await
        } else {
            put(&*db, v.table, v.id, parent, attributes.clone()).await
        };
        assert_eq!(stored.to_string(), v.rev, "the database stores vector {v:?} under its published id");
        let wanted = vec![RecordRevs { table: v.table.into(), id: v.id.into(), revs: vec![stored] }];
        let got = ok(db.get_revisions(wanted).await, "get_revisions");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].deleted, v.deleted);
        // A tombstone's body is empty; a backend may send it as absent.
        let body = got[0].attributes.as_ref().map(Body::attributes).unwrap_or_default();
        assert_eq!(body, attributes, "stored body of {}", v.rev);
        assert_eq!(got[0].ancestry.first().map(|r| r.to_string()).as_deref(), v.parent, "parent of {}", v.rev);
    }
}
