//! The typed value decoder (PROTOCOL.md §1): whatever decodes encodes back to the same value, its
//! canonical encoding is stable, and the body limits judge it without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_api::{Attributes, Limits};
use outpost_engine::canonical::encode_attributes;

fuzz_target!(|data: &[u8]| {
    let Ok(attributes) = serde_json::from_slice::<Attributes>(data) else { return };
    let text = serde_json::to_string(&attributes).expect("a decoded body encodes");
    let again: Attributes = serde_json::from_str(&text).expect("an encoded body decodes");
    assert_eq!(again, attributes, "the wire form round-trips");
    assert_eq!(encode_attributes(&again), encode_attributes(&attributes), "one canonical encoding");
    let _ = outpost_engine::validate::body(&attributes, &Limits::default());
});
