//! The conformance suite on PostgreSQL: every test on a fresh schema of the test server
//! (`OUTPOST_TEST_POSTGRES`; skipped when unset, failing under `CI=true`).

outpost_tests::conformance_suite!(outpost_tests::postgres::PostgresFactory::new());
