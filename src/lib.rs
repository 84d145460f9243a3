//! staging-refresh: keeps a staging environment a fresh, anonymized copy of production.
//! `main.rs` only parses the command line and prints the error; everything else lives here,
//! one module per concern. The modules, from the ground up: each uses only modules listed
//! above it (tests/layers.rs checks this order, so the imports form no cycle).
//!
//! | module | what it is for |
//! |---|---|
//! | [`util`] | atomic, durable JSON files (state, journal, maintenance flag); counts in messages |
//! | [`table`] | a table's name: a (schema, name) pair, parsed from the config, quoted for SQL |
//! | [`config`] | the config file: schema, loading (TOML, env, `_file` secrets), validation, the masking rules |
//! | [`error`] | exit codes of the operator contract; the guard and lock errors |
//! | [`fault`] | fault injection points for the crash tests (debug builds only) |
//! | [`shutdown`] | the cooperative shutdown token (tokio-util's `CancellationToken`), cancelled by SIGTERM or SIGINT |
//! | [`progress`] | a phase's progress: a bar on a terminal, log lines otherwise |
//! | [`lock`] | one refresh at a time: the flock'd lock file |
//! | [`store`] | S3 clients; the production bucket's read-only type |
//! | [`snapshot`] | the snapshot catalog: db-backup names, sidecars, selection |
//! | [`database`] | the staging PostgreSQL server: sessions, scratch database, swap, markers, SQL quoting, server errors, the extensions the restore role may use |
//! | [`restore`] | the dump stream: download, decode, lexer, filter and what the restore role may run, loader, parallel post-data |
//! | [`mask`] | masking in the restore stream: the unclassified gate, mask kinds applied, COPY rows, the key, the admin row |
//! | [`verify`] | the anonymize phase after the restore: `extra_sql`, bcrypt hashes, verification, the PII scan |
//! | [`survey`] | a snapshot's columns as the rules classify them: rule, or suggestion and evidence (`plan`, `rules`) |
//! | [`drift`] | a new snapshot's columns against the rules, reading only as much of it as that needs (the daemon's watch, `check`) |
//! | [`media`] | the media mirror: merge-joined listings, server-side copies, deletes |
//! | [`staging`] | the live environment around the database: backend commands, Redis, maintenance flag |
//! | [`journal`] | the run journal a crashed run leaves, and the record of its recovery |
//! | [`report`] | the run report every output is built from, and what of it may be sent out |
//! | [`recovery`] | puts staging back in order after a run that died |
//! | [`refresh`] | the orchestrator: one refresh, phase by phase; the cutover; the plan; the rollback |
//! | [`logging`] | tracing to stderr or journald, with the run's fields |
//! | [`state`] | the state file: the current run, the last reports, totals |
//! | [`check`] | `check`: config, credentials, reachability, markers, roles |
//! | [`metrics`] | the Prometheus endpoint, read from the state file |
//! | [`notify`] | what people read of a run (the operator's plain text, the summary email in text and HTML, the chat webhooks) and of a new snapshot's unclassified columns |
//! | [`daemon`] | the event loop and scheduler, the run supervisor, the snapshot watch, the control socket, systemd notification |
//! | [`status`] | `status`: the current and last run, the daemon, the maintenance flag, the previous database |
//! | [`cli`] | the commands of the operator contract |

mod check;
pub mod cli;
pub mod config;
mod daemon;
pub mod database;
pub mod drift;
pub mod error;
pub mod fault;
mod journal;
pub mod lock;
pub mod logging;
pub mod mask;
pub mod media;
pub mod metrics;
mod notify;
mod progress;
mod recovery;
mod refresh;
pub mod report;
pub mod restore;
pub mod shutdown;
pub mod snapshot;
mod staging;
pub mod state;
mod status;
pub mod store;
mod survey;
pub mod table;
mod util;
pub mod verify;
