//! The conformance suite on the engine's in-memory reference backend: the engine's rules with no
//! SQL underneath, so a rule hidden in a backend's SQL would show as a difference from SQLite and
//! PostgreSQL.

outpost_tests::conformance_suite!(outpost_tests::MemoryFactory::new());
