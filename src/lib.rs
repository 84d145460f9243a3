//! staging-refresh: keeps a staging environment a fresh, anonymized copy of production.
//! `main.rs` only parses the command line; everything else lives here, one module per concern.

pub mod anonymize;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod database;
pub mod error;
pub mod fault;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod mask;
pub mod media;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod recovery;
pub mod refresh;
pub mod report;
pub mod restore;
pub mod shutdown;
pub mod snapshot;
pub mod staging;
pub mod state;
pub mod store;
pub mod table;
pub mod util;
