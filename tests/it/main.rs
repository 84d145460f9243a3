//! The integration tests: one binary, so the harness (`common`) is compiled once and the
//! services it starts (PostgreSQL, moto, the SMTP sink) are started once for every test.
//! One module per area. Tests run side by side on the shared servers with names of their own
//! (`common::unique`); one that checks or changes server-wide state starts a server of its
//! own (`common::Postgres::start`).

mod common;

mod advice;
mod applications;
mod catalog;
mod containment;
mod daemon;
mod database_tls;
mod detect;
mod drift;
mod faults;
mod fitting;
mod formats;
mod hostile_input;
mod masking;
mod media;
mod monitoring;
mod observability;
mod postdata;
mod refresh;
mod restore_role;
mod rules;
mod secrets;
mod snapshots;
mod stream_scan;
mod webhooks;
