//! What the PostgreSQL test binaries share: the test server's URL.

/// `OUTPOST_TEST_POSTGRES`, or None (skipped) when unset — a failure under `CI=true`, where a
/// PostgreSQL test that cannot run must not pass silently.
pub fn test_url() -> Option<String> {
    match std::env::var("OUTPOST_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "OUTPOST_TEST_POSTGRES is unset under CI=true: PostgreSQL tests must run");
            eprintln!("skipped: OUTPOST_TEST_POSTGRES is unset (cargo xtask pg start)");
            None
        }
    }
}
