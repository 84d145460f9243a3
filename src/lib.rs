//! staging-refresh: keeps a staging environment a fresh, anonymized copy of production.
//! `main.rs` only parses the command line; everything else lives here, one module per concern.

pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod logging;
pub mod media;
pub mod progress;
pub mod shutdown;
pub mod snapshot;
pub mod store;
