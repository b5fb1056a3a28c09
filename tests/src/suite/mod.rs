//! The conformance tests, one module per area of the spec. Each test takes a [`crate::Factory`] and
//! panics on a violation; [`crate::conformance_suite!`] lists them all.

pub mod bad_input;
pub mod batch;
pub mod compaction;
pub mod events;
pub mod feed;
pub mod foreign;
pub mod local;
pub mod replication;
pub mod revisions;
pub mod tables;
pub mod values;
pub mod writes;
