//! The conformance suite on SQLite: every test on a fresh database file in a temp dir.

outpost_tests::conformance_suite!(outpost_tests::SqliteFactory::new());
