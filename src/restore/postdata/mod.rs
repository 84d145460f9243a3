//! The post-data statements of a dump (indexes, constraints, triggers, rules, policies, their
//! comments and grants) run on a pool of `restore.jobs` sessions, as `pg_restore -j` runs
//! them for custom-format dumps.
//!
//! The loader hands over each statement [`claim`] understands, once everything before it
//! in the dump has run; every other statement waits for the jobs handed over before it and
//! runs in order on the loader's session, so a COPY, a matview refresh or anything unknown
//! is a barrier. Between barriers the dump's order is kept wherever it matters: statements on
//! the same table wait for the earlier ones on it (index builds, which share their lock, run
//! together), a foreign key counts for both its tables, so what it needs (the referenced key,
//! the index a constraint uses, the function a trigger calls) is finished first, and tables
//! locked in that order cannot deadlock. A statement that deadlocks anyway (through a
//! function reading other tables) runs again alone.
//!
//! Only what the filter let through reaches this module, and a statement runs in the
//! context the filter judged it in: inside the dump's own `BEGIN` ... `COMMIT` everything
//! runs in order on the loader's session; the pool's sessions follow the dump's session
//! settings (`SET`, `set_config`): each job carries how many of them precede it, and runs on
//! a session that has run those (a session that has run more is replaced by a new one).
//! After each job its session is checked as the loader's is at the end (outside any
//! transaction) before it runs anything else.

mod claim;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;

use super::load_error::LoadError;
use super::session::{Pool, Sessions, Worker, outside_transaction};
use super::statement::Statement;
use crate::database::sql::ServerMessage;
use crate::progress::Progress;
use claim::{Claim, Lock, classify, is_setting};

/// Where the loader sends a statement.
#[derive(Debug)]
pub enum Route {
    /// To the pool, through [`PostData::submit`].
    Job(Job),
    /// A session setting: run it in order; the pool's sessions follow it.
    Setting(Statement),
    /// Anything else: after every job handed over before it ([`PostData::finish`]).
    InOrder(Statement),
}

/// A statement the pool may run.
#[derive(Debug)]
pub struct Job {
    text: String,
    line: u64,
    claim: Claim,
    /// What it is, for the progress.
    label: String,
}

/// A submitted job, not started yet.
struct Waiting {
    job: Job,
    /// How many earlier jobs it waits for have not finished yet.
    blocked_by: usize,
    /// How many session settings precede it.
    settings: usize,
    /// It deadlocked: it runs with nothing else.
    alone: bool,
}

struct Running {
    waiting: Waiting,
    since: Instant,
}

struct Finished {
    id: usize,
    worker: Worker,
    result: Result<(), Failure>,
}

/// Why a job failed.
enum Failure {
    /// The server refused its statement (or the settings before it), or it ran past the
    /// bound.
    Statement(ServerMessage),
    /// It ran, and left its session other than the restore needs it.
    Session(Box<LoadError>),
}

/// A job failed: its dump line and why.
struct Failed(u64, Failure);

impl From<Failed> for LoadError {
    fn from(Failed(line, failure): Failed) -> LoadError {
        match failure {
            Failure::Statement(message) => LoadError::Statement { line, message },
            Failure::Session(e) => *e,
        }
    }
}

/// The jobs on a table: the last exclusive one, and the shared ones since.
#[derive(Default)]
struct Holders {
    exclusive: Option<usize>,
    shared: Vec<usize>,
}

pub struct PostData<'a> {
    pool: Pool<'a>,
    progress: &'a Progress,
    running: JoinSet<Finished>,
    started: BTreeMap<usize, Running>,
    waiting: HashMap<usize, Waiting>,
    /// The waiting jobs that wait for nothing: they start in dump order as sessions free up.
    ready: BTreeSet<usize>,
    /// The jobs waiting for each unfinished job. Every job is looked at a bounded number of
    /// times (submitted, made ready, started, finished), so the post-data section takes time
    /// linear in its statements, however many wait on one table.
    waiting_for: HashMap<usize, Vec<usize>>,
    tables: HashMap<String, Holders>,
    indexes: HashMap<String, String>,
    /// The dump's own transaction is open: everything runs in order, inside it.
    in_transaction: bool,
    submitted: usize,
    done: usize,
    first: Option<Instant>,
}

impl<'a> PostData<'a> {
    pub fn new(sessions: &'a Sessions<'a>, progress: &'a Progress) -> PostData<'a> {
        PostData {
            pool: Pool::new(sessions),
            progress,
            running: JoinSet::new(),
            started: BTreeMap::new(),
            waiting: HashMap::new(),
            ready: BTreeSet::new(),
            waiting_for: HashMap::new(),
            tables: HashMap::new(),
            indexes: HashMap::new(),
            in_transaction: false,
            submitted: 0,
            done: 0,
            first: None,
        }
    }

    /// The pool's sessions, all idle once [`PostData::finish`] has returned.
    pub(super) fn pool(&mut self) -> &mut Pool<'a> {
        &mut self.pool
    }

    /// Where statement `s` goes; settings are recorded here.
    pub fn route(&mut self, s: Statement) -> Route {
        // The filter lets through pg_dump's bare BEGIN and COMMIT (around large objects).
        if s.is_word(0, "begin") || s.is_word(0, "commit") {
            self.in_transaction = s.is_word(0, "begin");
            return Route::InOrder(s);
        }
        if is_setting(&s) {
            self.pool.record_setting(s.text.clone());
            return Route::Setting(s);
        }
        match classify(&s, &self.indexes) {
            Some(claim) if !self.in_transaction => Route::Job(Job {
                label: s.label(),
                text: s.text,
                line: s.line,
                claim,
            }),
            _ => Route::InOrder(s),
        }
    }

    /// Queues `job` after the earlier jobs it conflicts with and starts what can start.
    pub async fn submit(&mut self, job: Job) -> Result<(), LoadError> {
        while let Some(joined) = self.running.try_join_next() {
            self.finished(joined)?;
        }
        let id = self.submitted;
        self.submitted += 1;
        self.first.get_or_insert_with(Instant::now);
        let mut after = Vec::new();
        for (table, lock) in &job.claim.tables {
            let holders = self.tables.entry(table.clone()).or_default();
            after.extend(holders.exclusive);
            match lock {
                Lock::Shared => holders.shared.push(id),
                Lock::Exclusive => {
                    after.append(&mut holders.shared);
                    holders.exclusive = Some(id);
                }
            }
        }
        if let Some((index, table)) = &job.claim.index {
            self.indexes.insert(index.clone(), table.clone());
        }
        after.sort_unstable();
        after.dedup();
        after.retain(|&earlier| self.unfinished(earlier));
        for &earlier in &after {
            self.waiting_for.entry(earlier).or_default().push(id);
        }
        if after.is_empty() {
            self.ready.insert(id);
        }
        let settings = self.pool.settings();
        self.waiting.insert(
            id,
            Waiting {
                job,
                blocked_by: after.len(),
                settings,
                alone: false,
            },
        );
        self.start_ready().await
    }

    /// Waits until every job submitted so far has run.
    pub async fn finish(&mut self) -> Result<(), LoadError> {
        loop {
            self.start_ready().await?;
            match self.running.join_next().await {
                Some(joined) => self.finished(joined)?,
                None => break,
            }
        }
        // Every job waits only for earlier ones, so with none running one was ready.
        assert!(self.waiting.is_empty(), "post-data jobs left waiting");
        if let Some(first) = self.first.take() {
            tracing::info!(
                statements = self.done,
                sessions = self.pool.peak,
                seconds = format!("{:.2}", first.elapsed().as_secs_f64()),
                "post-data statements run"
            );
        }
        Ok(())
    }

    fn unfinished(&self, id: usize) -> bool {
        self.waiting.contains_key(&id) || self.started.contains_key(&id)
    }

    /// Starts the waiting jobs whose turn it is, in dump order, while sessions are free.
    async fn start_ready(&mut self) -> Result<(), LoadError> {
        if self.started.values().any(|r| r.waiting.alone) {
            return Ok(());
        }
        while let Some(&id) = self.ready.first() {
            let waiting = &self.waiting[&id];
            let alone = waiting.alone;
            if alone && !self.started.is_empty() {
                break;
            }
            let Some(taken) = self.pool.take(waiting.settings).await? else {
                break;
            };
            self.ready.remove(&id);
            let waiting = self.waiting.remove(&id).expect("ready job waits");
            self.start(id, waiting, taken.worker, taken.catch_up);
            if alone {
                break;
            }
        }
        self.show_progress();
        Ok(())
    }

    fn start(&mut self, id: usize, waiting: Waiting, worker: Worker, catch_up: String) {
        let (text, line) = (waiting.job.text.clone(), waiting.job.line);
        let bound = self.pool.bound();
        self.running.spawn(async move {
            let client = &worker.client;
            let result = async {
                let statement = async {
                    if !catch_up.is_empty() {
                        client.batch_execute(&catch_up).await?;
                    }
                    client.batch_execute(&text).await
                };
                bound
                    .run(client, statement)
                    .await
                    .and_then(|r| r.map_err(ServerMessage::from))
                    .map_err(Failure::Statement)?;
                outside_transaction(client, line)
                    .await
                    .map_err(|e| Failure::Session(Box::new(e)))
            }
            .await;
            Finished { id, worker, result }
        });
        self.started.insert(
            id,
            Running {
                waiting,
                since: Instant::now(),
            },
        );
    }

    fn finished(&mut self, joined: Result<Finished, tokio::task::JoinError>) -> Result<(), Failed> {
        let finished = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let running = self
            .started
            .remove(&finished.id)
            .expect("a finished job was started");
        let mut waiting = running.waiting;
        match finished.result {
            Ok(()) => {
                self.done += 1;
                for later in self.waiting_for.remove(&finished.id).unwrap_or_default() {
                    let later_waiting = self.waiting.get_mut(&later).expect("it waits");
                    later_waiting.blocked_by -= 1;
                    if later_waiting.blocked_by == 0 {
                        self.ready.insert(later);
                    }
                }
            }
            Err(Failure::Statement(m))
                if m.code() == Some(SqlState::T_R_DEADLOCK_DETECTED.code()) && !waiting.alone =>
            {
                tracing::info!(
                    line = waiting.job.line,
                    "a post-data statement deadlocked with another: it runs again alone"
                );
                // What it waited for had finished before it started.
                waiting.alone = true;
                self.ready.insert(finished.id);
                self.waiting.insert(finished.id, waiting);
            }
            Err(failure) => return Err(Failed(waiting.job.line, failure)),
        }
        self.pool.put(finished.worker);
        self.show_progress();
        Ok(())
    }

    /// "post-data 12/40, longest running: CREATE INDEX ... (dump line 900, 3 s)".
    fn show_progress(&self) {
        let mut message = format!("post-data {}/{}", self.done, self.submitted);
        if let Some(r) = self.started.values().min_by_key(|r| r.since) {
            message.push_str(&format!(
                ", longest running: {} (dump line {}, {} s)",
                r.waiting.job.label,
                r.waiting.job.line,
                r.since.elapsed().as_secs()
            ));
        }
        self.progress.set_message(&message);
    }
}
