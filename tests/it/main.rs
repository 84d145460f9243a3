//! The integration tests: one binary, so the harness (`common`) is compiled once and the
//! services it starts (PostgreSQL, moto, the SMTP sink) are started once for every test.
//! One module per area; a test that changes server-wide state has a server of its own (see
//! `common::services`).

mod common;

mod containment;
mod daemon;
mod database_tls;
mod faults;
mod formats;
mod hostile_input;
mod masking;
mod media;
mod monitoring;
mod observability;
mod postdata;
mod refresh;
mod rules;
mod secrets;
mod snapshots;
mod webhooks;
