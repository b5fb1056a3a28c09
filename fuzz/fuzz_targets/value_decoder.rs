//! The typed value decoder (PROTOCOL.md §1): whatever decodes encodes back to the same value, its
//! canonical encoding is stable, and the body limits judge it without panicking. A `Body` read from
//! the same bytes is taken exactly when the typed parse takes them, with the same encodings (its fast
//! reader, for canonical text, and its general one alike).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_api::{Attributes, Body, Limits};
use outpost_engine::canonical::encode_attributes;

fuzz_target!(|data: &[u8]| {
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
