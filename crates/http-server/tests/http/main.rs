//! The HTTP API against docs/HTTP.md: every route in-process (`tower::ServiceExt::oneshot`) over SQLite
//! in a temp dir, bad input, the long-poll and event-stream feeds (one over a real socket), replication
//! jobs, quicksync files with range requests, and the OpenAPI document.

mod access;
mod bad_input;
mod feeds;
mod jobs;
mod metrics;
mod openapi;
mod quicksync;
mod replica;
mod routes;
mod support;
