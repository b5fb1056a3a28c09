//! Canonical text forms of the scalar types whose text is not obvious: decimal, float, timestamp, int
//! (SPEC §3). Each parser accepts valid but non-canonical input and returns the canonical form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Most significant digits a decimal may carry.
pub const DECIMAL_MAX_DIGITS: usize = 100;
/// Largest magnitude of a decimal's scientific exponent.
pub const DECIMAL_MAX_EXPONENT: i64 = 1000;

/// Parse an i64 from decimal text: optional sign, digits; leading zeros allowed, `-0` is `0`.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid int {s:?}: expected decimal digits with an optional sign"));
    }
    s.parse::<i64>().map_err(|_| format!("int {s:?} is out of range for a 64-bit integer"))
}

/// An exact decimal number held in canonical text: no leading zeros, no trailing fractional zeros,
/// no exponent, `0` for zero.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decimal(String);

impl Decimal {
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` is a decimal's canonical text (what parsing it gives back unchanged), judged
    /// on its characters without parsing: `0`, or an optional `-`, then either digits without a
    /// leading zero or `0`, then optionally a point and digits not ending in zero; at most
    /// [`DECIMAL_MAX_DIGITS`] significant digits, a scientific exponent within
    /// ±[`DECIMAL_MAX_EXPONENT`]. A body's reader checks every decimal it holds this way.
    pub fn is_canonical(text: &str) -> bool {
        if text == "0" {
            return true;
        }
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = match unsigned.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (unsigned, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f) || f.ends_with('0')) {
            return false;
        }
        // The significant digits, and the scientific exponent (the first one's place).
        let (significant, exponent) = match (int, frac) {
            ("0", None) => return false,
            ("0", Some(frac)) => {
                let zeros = frac.bytes().take_while(|&b| b == b'0').count();
                (frac.len() - zeros, -(zeros as i64) - 1)
            }
            (int, _) if int.starts_with('0') => return false,
            (int, frac) => {
                let kept = match frac {
                    Some(frac) => int.len() + frac.len(),
                    None => int.trim_end_matches('0').len(),
                };
                (kept, int.len() as i64 - 1)
            }
        };
        significant <= DECIMAL_MAX_DIGITS && exponent.abs() <= DECIMAL_MAX_EXPONENT
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.0)
    }
}

impl FromStr for Decimal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid decimal {s:?}: expected digits with an optional sign, point and exponent");
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(bad());
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(bad());
                }
                // Anything longer than this is out of range however it is written.
                if digits.trim_start_matches('0').len() > 6 {
                    return Err(format!("decimal {s:?}: exponent out of range ±{DECIMAL_MAX_EXPONENT}"));
                }
                e.parse().map_err(|_| bad())?
            }
        };
        let mut digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
        // The decimal point sits after `point` digits of `digits`.
        let mut point = int_part.len() as i64 + exponent;
        let leading = digits.iter().take_while(|&&d| d == b'0').count();
        digits.drain(..leading);
        point -= leading as i64;
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Ok(Decimal("0".into()));
        }
        if digits.len() > DECIMAL_MAX_DIGITS {
            return Err(format!("decimal {s:?} has more than {DECIMAL_MAX_DIGITS} significant digits"));
        }
        let sci_exponent = point - 1;
        if sci_exponent.abs() > DECIMAL_MAX_EXPONENT {
            return Err(format!("decimal {s:?}: exponent out of range ±{DECIMAL_MAX_EXPONENT}"));
        }
        let digits = String::from_utf8(digits).expect("ascii digits");
        let mut out = String::with_capacity(digits.len() + 4);
        if negative {
            out.push('-');
        }
        let len = digits.len() as i64;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point >= len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (point - len) as usize));
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
        Ok(Decimal(out))
    }
}

/// Check that a float is representable (finite) and canonicalise `-0.0` to `0.0`.
pub fn canonical_float(f: f64) -> Result<f64, String> {
    if !f.is_finite() {
        return Err(format!("float {f} is not finite: NaN and infinities are rejected"));
    }
    Ok(if f == 0.0 { 0.0 } else { f })
}

/// Parse a float from text; the value must be finite.
pub fn parse_float(s: &str) -> Result<f64, String> {
    let bad = || format!("invalid float {s:?}: expected a finite decimal number");
    // Rust also parses "inf" and "NaN"; only digits, sign, point and exponent are accepted here.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) {
        return Err(bad());
    }
    let f: f64 = s.parse().map_err(|_| bad())?;
    canonical_float(f).map_err(|_| format!("float {s:?} is out of range for a 64-bit float"))
}

/// The canonical text of a finite float: the shortest digits that round-trip, written like
/// ECMAScript's `Number.prototype.toString` (positional for decimal exponents -7 < e < 21,
/// otherwise `d.ddde±x`).
pub fn format_float(f: f64) -> String {
    debug_assert!(f.is_finite());
    if f == 0.0 {
        return "0".into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i64 = exp.parse().expect("LowerExp exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    let n = exp + 1;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n >= 1 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
}

/// A point in time: UTC seconds since the Unix epoch and nanoseconds (SPEC §3). Written as RFC 3339
/// with `Z` and no trailing fractional zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp { secs: d.as_secs() as i64, nanos: d.subsec_nanos() }
    }

    /// A timestamp from parts; `None` when out of the range RFC 3339 can write (years 0000–9999).
    pub fn from_parts(secs: i64, nanos: u32) -> Option<Self> {
        let ts = Timestamp { secs, nanos };
        (nanos < 1_000_000_000 && ts.datetime().is_some()).then_some(ts)
    }

    fn datetime(&self) -> Option<time::OffsetDateTime> {
        let dt = time::OffsetDateTime::from_unix_timestamp(self.secs).ok()?;
        (0..=9999).contains(&dt.year()).then_some(dt)
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("invalid timestamp {s:?}: expected RFC 3339 ({e})"))?;
        Timestamp::from_parts(dt.unix_timestamp(), dt.nanosecond())
            .ok_or_else(|| format!("timestamp {s:?} is outside years 0000-9999 in UTC"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.datetime().ok_or(fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::invalid(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What parsing takes back unchanged.
    fn round_trips(s: &str) -> bool {
        s.parse::<Decimal>().is_ok_and(|d| d.as_str() == s)
    }

    #[test]
    fn a_decimal_is_judged_canonical_exactly_when_parsing_gives_it_back() {
        // Every text of up to six characters over the characters a decimal is written with.
        let alphabet = ['0', '1', '5', '.', '-', '+', 'e'];
        let mut texts = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> =
                texts.iter().flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}"))).collect();
            for t in &longer {
                assert_eq!(Decimal::is_canonical(t), round_trips(t), "{t:?}");
            }
            texts = longer;
        }
        // The limits: significant digits and the exponent, at and past them.
        let nines = |n: usize| "9".repeat(n);
        let zeros = |n: usize| "0".repeat(n);
        for t in [
            nines(100),
            nines(101),
            format!("1{}", zeros(1000)),
            format!("1{}", zeros(1001)),
            format!("0.{}1", zeros(999)),
            format!("0.{}1", zeros(1000)),
            format!("-{}.{}", nines(50), nines(50)),
            format!("{}.{}", nines(50), nines(51)),
            format!("1{}.5", zeros(999)),
            format!("1{}.5", zeros(1000)),
        ] {
            assert_eq!(Decimal::is_canonical(&t), round_trips(&t), "{t}");
        }
    }

    fn check_decimal(input: &str, expect: &str) {
        assert_eq!(input.parse::<Decimal>().unwrap().as_str(), expect, "{input}");
    }

    #[test]
    fn decimals_canonicalise() {
        for (i, e) in [
            ("12.50", "12.5"),
            ("0012.5000", "12.5"),
            ("1.5e3", "1500"),
            ("1.5E+3", "1500"),
            ("15e-3", "0.015"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("+7", "7"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-123.456e1", "-1234.56"),
            ("100", "100"),
            ("0.00100", "0.001"),
            ("1e1000", &format!("1{}", "0".repeat(1000))),
        ] {
            check_decimal(i, e);
        }
        for bad in ["", "-", ".", "1e", "1e+", "abc", "1.2.3", "1e1001", "1e-1001", "1e99999999999", "0x10", " 1"] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad}");
        }
        assert!("1".repeat(101).parse::<Decimal>().is_err());
        assert!("1".repeat(100).parse::<Decimal>().is_ok());
    }

    #[test]
    fn floats_print_shortest_round_trip() {
        for (f, e) in [
            (1.5, "1.5"),
            (1.0, "1"),
            (-0.0, "0"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1.5e-6, "0.0000015"),
            (-2.5e300, "-2.5e+300"),
            (123456.789, "123456.789"),
        ] {
            assert_eq!(format_float(canonical_float(f).unwrap()), e);
            assert_eq!(parse_float(e).unwrap(), canonical_float(f).unwrap());
        }
        for bad in ["NaN", "inf", "-inf", "infinity", "1e999", "", "abc", "0x1"] {
            assert!(parse_float(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ints_accept_non_canonical_input() {
        assert_eq!(parse_int("007"), Ok(7));
        assert_eq!(parse_int("-0"), Ok(0));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        for bad in ["", "-", "1.0", "9223372036854775808", "1e3", " 1", "0x1"] {
            assert!(parse_int(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_written_in_utc_without_trailing_zeros() {
        for (i, e) in [
            ("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.5Z"),
            ("2026-01-01T00:00:00.500000Z", "2026-01-01T00:00:00.5Z"),
            ("2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00Z"),
            ("1969-12-31T23:59:59.000000001Z", "1969-12-31T23:59:59.000000001Z"),
        ] {
            let t: Timestamp = i.parse().unwrap();
            assert_eq!(t.to_string(), e);
        }
        let t: Timestamp = "1970-01-01T00:00:01.25Z".parse().unwrap();
        assert_eq!((t.secs, t.nanos), (1, 250_000_000));
        for bad in ["", "2026-13-01T00:00:00Z", "2026-01-01", "yesterday", "2026-01-01T00:00:00"] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }
}
