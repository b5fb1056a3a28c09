//! The benchmark's records: deterministic from (seed, index, version), ten attributes, about 450 bytes
//! of JSON each (SPEC §15), so every run and every reference writes exactly the same rows.

use serde_json::{json, Value};

/// SplitMix64: small, fast and good enough to make varied but reproducible records.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    fn word(&mut self, len: usize) -> String {
        const LETTERS: &[u8] = b"etaoinshrdlcumwfgypbvkjxqz";
        // Skewed towards common letters, like text, so compression ratios are realistic.
        (0..len).map(|_| LETTERS[(self.below(26) * self.below(26) / 25) as usize] as char).collect()
    }

    fn text(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 8);
        while out.len() < len {
            if !out.is_empty() {
                out.push(' ');
            }
            let n = 2 + self.below(8) as usize;
            out.push_str(&self.word(n));
        }
        out.truncate(len);
        out
    }
}

const CITIES: &[&str] = &[
    "Lisbon",
    "Nairobi",
    "Osaka",
    "Quito",
    "Tromsø",
    "Hobart",
    "Reykjavík",
    "Ulaanbaatar",
    "Cusco",
    "Tallinn",
    "Windhoek",
    "Darwin",
    "Yellowknife",
    "Kathmandu",
    "Leh",
    "Ushuaia",
];
const TAGS: &[&str] = &["field", "edge", "cloud", "audit", "urgent", "archived", "draft", "shared", "review"];

/// The id of record `index`.
pub fn id(index: u64) -> String {
    format!("r{index:09}")
}

/// The attributes of record `index` at `version` (0 when first written; the benchmark's updates
/// write version 1, 2, …).
pub fn attributes(seed: u64, index: u64, version: u64) -> Value {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ version.rotate_left(32));
    let first = rng.word(6);
    let last = rng.word(8);
    json!({
        "name": format!("{first} {last}"),
        "email": format!("{first}.{last}@example.org"),
        "city": rng.pick(CITIES),
        "age": 18 + rng.below(70),
        "score": rng.below(1_000_000) as f64 / 100.0,
        "active": rng.below(4) != 0,
        "tags": [rng.pick(TAGS), rng.pick(TAGS)],
        "created": format!("2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            1 + rng.below(12), 1 + rng.below(28), rng.below(24), rng.below(60), rng.below(60)),
        "version": version,
        "note": rng.text(260),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_ten_attributes_of_about_450_bytes() {
        let sizes: Vec<usize> = (0..1000).map(|i| serde_json::to_string(&attributes(7, i, 0)).unwrap().len()).collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((420..=480).contains(&mean), "mean record size {mean}");
        assert_eq!(attributes(7, 3, 0).as_object().unwrap().len(), 10);
    }

    #[test]
    fn records_are_deterministic_and_differ_by_index_and_version() {
        assert_eq!(attributes(7, 3, 0), attributes(7, 3, 0));
        assert_ne!(attributes(7, 3, 0), attributes(7, 4, 0));
        assert_ne!(attributes(7, 3, 0), attributes(7, 3, 1));
        assert_ne!(attributes(7, 3, 0), attributes(8, 3, 0));
        assert_eq!(id(42), "r000000042");
    }
}
