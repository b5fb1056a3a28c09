//! The quicksync manifest parser: what parses renders to text that parses to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_quicksync::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(manifest) = Manifest::parse(text) else { return };
    let rendered = manifest.render();
    let again = Manifest::parse(&rendered).expect("a rendered manifest parses");
    assert_eq!(again.render(), rendered, "rendering is stable");
});
