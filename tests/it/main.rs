//! The integration tests, in one test binary: each module is a suite, sharing the harness
//! (`common`) and the fake peers (`support`). One suite: `cargo test --test it dialer::`.
//!
//! They share one process, so what is process-wide is shared too: the metrics recorder
//! (counters read from `/metrics` are the sum over every server of the run) and the log
//! capture (`common::logs`). A test tells its own from others' by what is its own: its
//! tasks, its call uuids (a node id of its own), its ports.

mod common;
mod support;

mod api;
mod auth;
mod campaigns;
mod console;
mod crash;
mod dialer;
mod docs;
mod faults;
mod filters;
mod freeswitch;
mod hostile;
mod inbound;
mod integrations;
mod llm;
mod multinode;
mod openapi;
mod operations;
mod outage;
mod recordings;
mod schemathesis;
mod sip;
mod slow_clients;
mod stats;
mod transfer;
mod trunks;
