//! The post-data statements of a dump (indexes, constraints, triggers, rules, policies, their
//! comments and grants) run on a pool of `restore.jobs` sessions, as `pg_restore -j` runs
//! them for custom-format dumps.
//!
//! The loader hands over each statement this module understands, once everything before it
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

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;

use super::load_error::LoadError;
use super::session::{Pool, Sessions, Worker, outside_transaction};
use super::statement::{Statement, TokenKind, quoted};
use crate::progress::Progress;

/// How a job holds a table, as PostgreSQL would lock it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// `CREATE INDEX` (SHARE): builds of one table's indexes run together.
    Shared,
    /// Everything else: alone on the table.
    Exclusive,
}

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
    /// Earlier jobs it must wait for.
    after: Vec<usize>,
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
    /// The server refused its statement (or the settings before it).
    Statement(tokio_postgres::Error),
    /// It ran, and left its session other than the restore needs it.
    Session(Box<LoadError>),
}

/// A job failed: its dump line and why.
struct Failed(u64, Failure);

impl From<Failed> for LoadError {
    fn from(Failed(line, failure): Failed) -> LoadError {
        match failure {
            Failure::Statement(e) => LoadError::Statement {
                line,
                message: e.into(),
            },
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
    waiting: BTreeMap<usize, Waiting>,
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
            waiting: BTreeMap::new(),
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
        let settings = self.pool.settings();
        self.waiting.insert(
            id,
            Waiting {
                job,
                after,
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
        let ready: Vec<usize> = self
            .waiting
            .iter()
            .filter(|(_, w)| !w.after.iter().any(|&d| self.unfinished(d)))
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            let waiting = &self.waiting[&id];
            let alone = waiting.alone;
            if alone && !self.started.is_empty() {
                break;
            }
            let Some(taken) = self.pool.take(waiting.settings).await? else {
                break;
            };
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
        self.running.spawn(async move {
            let client = &worker.client;
            let result = async {
                if !catch_up.is_empty() {
                    client
                        .batch_execute(&catch_up)
                        .await
                        .map_err(Failure::Statement)?;
                }
                client
                    .batch_execute(&text)
                    .await
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
            Ok(()) => self.done += 1,
            Err(Failure::Statement(e))
                if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) && !waiting.alone =>
            {
                tracing::info!(
                    line = waiting.job.line,
                    "a post-data statement deadlocked with another: it runs again alone"
                );
                waiting.alone = true;
                waiting.after.clear();
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

/// `SET` (not `LOCAL`, not a transaction's) or pg_dump's
/// `SELECT pg_catalog.set_config('name', 'value', false);`.
fn is_setting(s: &Statement) -> bool {
    let w = |i: usize, word: &str| s.is_word(i, word);
    if w(0, "set") {
        return !(w(1, "local")
            || w(1, "transaction")
            || w(1, "constraints")
            || (w(1, "session") && w(2, "characteristics")));
    }
    let texts: Vec<&str> = (0..s.tokens.len())
        .filter_map(|i| s.token_text(i))
        .collect();
    let call = match texts.as_slice() {
        [select, "pg_catalog", ".", rest @ ..] | [select, rest @ ..]
            if select.eq_ignore_ascii_case("select") =>
        {
            rest
        }
        _ => return false,
    };
    let kind = |i: usize| s.tokens[s.tokens.len() - call.len() + i].kind;
    matches!(call, [f, "(", _, ",", _, ",", local, ")", ";"]
        if f.eq_ignore_ascii_case("set_config") && local.eq_ignore_ascii_case("false"))
        && kind(2) == TokenKind::String
        && kind(4) == TokenKind::String
}

/// What a job works on.
#[derive(Debug, PartialEq, Eq)]
struct Claim {
    /// Its tables, as quoted qualified names.
    tables: Vec<(String, Lock)>,
    /// An index it creates, and that index's table (for a later `COMMENT ON INDEX`).
    index: Option<(String, String)>,
}

impl Claim {
    fn exclusive(mut tables: Vec<String>) -> Option<Claim> {
        // A self-referencing foreign key names its table twice; a job never waits for itself.
        tables.sort();
        tables.dedup();
        Some(Claim {
            tables: tables.into_iter().map(|t| (t, Lock::Exclusive)).collect(),
            index: None,
        })
    }
}

/// What a post-data statement works on, or `None` for a statement the pool may not run.
fn classify(s: &Statement, indexes: &HashMap<String, String>) -> Option<Claim> {
    let w = |i: usize, word: &str| s.is_word(i, word);
    let table_at = |i: usize| s.qualified(i).map(|(parts, _)| quoted(&parts));
    let top_level = || s.top_level(0..s.tokens.len());
    if w(0, "create") {
        let i = if w(1, "unique") { 2 } else { 1 };
        if w(i, "index") && !w(i + 1, "concurrently") {
            let mut i = i + 1;
            if w(i, "if") && w(i + 1, "not") && w(i + 2, "exists") {
                i += 3;
            }
            let (name, i) = match s.qualified(i) {
                Some((name, next)) if !w(i, "on") => (Some(name), next),
                _ => (None, i),
            };
            if !w(i, "on") {
                return None;
            }
            let at = if w(i + 1, "only") { i + 2 } else { i + 1 };
            let (table, _) = s.qualified(at)?;
            // An unqualified index name is in its table's schema.
            let index = name.map(|mut name| {
                if name.len() == 1 {
                    name.splice(0..0, table[..table.len() - 1].iter().cloned());
                }
                (quoted(&name), quoted(&table))
            });
            return Some(Claim {
                tables: vec![(quoted(&table), Lock::Shared)],
                index,
            });
        }
        if w(1, "trigger") || (w(1, "constraint") && w(2, "trigger")) {
            let on = top_level().find(|&i| i > 2 && w(i, "on"))?;
            let mut tables = vec![table_at(on + 1)?];
            if let Some(from) = top_level().find(|&i| i > on && w(i, "from")) {
                tables.push(table_at(from + 1)?);
            }
            return Claim::exclusive(tables);
        }
        if w(1, "rule") && w(3, "as") && w(4, "on") && w(6, "to") {
            return Claim::exclusive(vec![table_at(7)?]);
        }
        if w(1, "policy") && w(3, "on") {
            return Claim::exclusive(vec![table_at(4)?]);
        }
        return None;
    }
    if w(0, "alter") && w(1, "table") {
        // A second subcommand could do anything: only single ones are understood.
        if top_level().any(|i| s.token_text(i) == Some(",")) {
            return None;
        }
        let mut i = 2;
        if w(i, "if") && w(i + 1, "exists") {
            i += 2;
        }
        if w(i, "only") {
            i += 1;
        }
        let (table, i) = s.qualified(i)?;
        let table = quoted(&table);
        if w(i, "add") && w(i + 1, "constraint") {
            let kind = i + 3;
            if w(kind, "foreign") && w(kind + 1, "key") {
                let references = top_level().find(|&j| j > kind && w(j, "references"))?;
                return Claim::exclusive(vec![table, table_at(references + 1)?]);
            }
            let known = (w(kind, "primary") && w(kind + 1, "key"))
                || w(kind, "unique")
                || w(kind, "exclude")
                || w(kind, "check");
            return if known {
                Claim::exclusive(vec![table])
            } else {
                None
            };
        }
        let known = ((w(i, "enable") || w(i, "force"))
            && w(i + 1, "row")
            && w(i + 2, "level")
            && w(i + 3, "security"))
            || (w(i, "cluster") && w(i + 1, "on"))
            || (w(i, "replica") && w(i + 1, "identity"));
        return if known {
            Claim::exclusive(vec![table])
        } else {
            None
        };
    }
    if w(0, "comment") && w(1, "on") {
        if ["constraint", "trigger", "policy", "rule"]
            .iter()
            .any(|kind| w(2, kind))
            && w(4, "on")
            && !w(5, "domain")
        {
            return Claim::exclusive(vec![table_at(5)?]);
        }
        if w(2, "index") {
            return Claim::exclusive(vec![indexes.get(&table_at(3)?)?.clone()]);
        }
        return None;
    }
    if w(0, "grant") || w(0, "revoke") {
        // Only what pg_dump writes for relations: ON TABLE|SEQUENCE name[, name] TO|FROM.
        let on = top_level().find(|&i| w(i, "on"))?;
        if !(w(on + 1, "table") || w(on + 1, "sequence")) {
            return None;
        }
        let mut tables = Vec::new();
        let mut i = on + 2;
        loop {
            let (table, next) = s.qualified(i)?;
            tables.push(quoted(&table));
            if s.token_text(next) == Some(",") {
                i = next + 1;
            } else if w(next, "to") || w(next, "from") {
                return Claim::exclusive(tables);
            } else {
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::statement::parse;
    use super::*;

    fn job(sql: &str, indexes: &HashMap<String, String>) -> Option<Vec<(String, Lock)>> {
        classify(&parse(sql), indexes).map(|claim| claim.tables)
    }

    fn x(tables: &[&str]) -> Option<Vec<(String, Lock)>> {
        Some(
            tables
                .iter()
                .map(|t| (t.to_string(), Lock::Exclusive))
                .collect(),
        )
    }

    #[test]
    fn post_data_statements_name_their_tables() {
        let none = HashMap::new();
        let shared = |t: &str| Some(vec![(t.to_owned(), Lock::Shared)]);
        for (sql, tables) in [
            (
                "CREATE INDEX product_user_id_idx ON public.product USING btree (user_id);",
                shared("\"public\".\"product\""),
            ),
            (
                "CREATE UNIQUE INDEX u ON ONLY public.\"User\" USING btree (lower(email)) WHERE (x > 1);",
                shared("\"public\".\"User\""),
            ),
            (
                "ALTER TABLE ONLY public.\"user\"\n    ADD CONSTRAINT user_pkey PRIMARY KEY (id);",
                x(&["\"public\".\"user\""]),
            ),
            (
                "ALTER TABLE ONLY public.booking ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
                x(&["\"public\".\"booking\""]),
            ),
            (
                "ALTER TABLE ONLY public.product\n    ADD CONSTRAINT product_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.\"user\"(id);",
                x(&["\"public\".\"product\"", "\"public\".\"user\""]),
            ),
            (
                "ALTER TABLE ONLY public.category ADD CONSTRAINT category_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES public.category(id);",
                x(&["\"public\".\"category\""]),
            ),
            (
                "CREATE TRIGGER t BEFORE UPDATE OF email ON public.\"user\" FOR EACH ROW EXECUTE FUNCTION public.touch();",
                x(&["\"public\".\"user\""]),
            ),
            (
                "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON public.a FROM public.b FOR EACH ROW EXECUTE FUNCTION f();",
                x(&["\"public\".\"a\"", "\"public\".\"b\""]),
            ),
            (
                "CREATE RULE r AS ON INSERT TO public.t DO INSTEAD NOTHING;",
                x(&["\"public\".\"t\""]),
            ),
            (
                "CREATE POLICY p ON public.t FOR SELECT USING ((owner = CURRENT_USER));",
                x(&["\"public\".\"t\""]),
            ),
            (
                "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;",
                x(&["\"public\".\"t\""]),
            ),
            (
                "COMMENT ON CONSTRAINT c ON public.t IS 'x';",
                x(&["\"public\".\"t\""]),
            ),
            (
                "GRANT SELECT ON TABLE public.t, public.u TO staging_owner;",
                x(&["\"public\".\"t\"", "\"public\".\"u\""]),
            ),
            (
                "REVOKE ALL ON SEQUENCE public.s FROM PUBLIC;",
                x(&["\"public\".\"s\""]),
            ),
        ] {
            assert_eq!(job(sql, &none), tables, "{sql}");
        }
    }

    #[test]
    fn anything_else_runs_in_order() {
        let none = HashMap::new();
        for sql in [
            "CREATE TABLE public.t (id int);",
            "CREATE INDEX CONCURRENTLY i ON public.t (id);",
            "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('s');",
            "ALTER TABLE ONLY public.t ADD CONSTRAINT c PRIMARY KEY (id), ADD COLUMN x int;",
            "ALTER TABLE public.t OWNER TO staging_owner;",
            "ALTER TABLE ONLY public.p ATTACH PARTITION public.c FOR VALUES IN (1);",
            "ALTER INDEX public.p_idx ATTACH PARTITION public.c_idx;",
            "REFRESH MATERIALIZED VIEW public.m;",
            "SELECT pg_catalog.setval('public.s', 42, true);",
            "GRANT ALL ON SCHEMA public TO staging_owner;",
            "GRANT USAGE ON ALL TABLES IN SCHEMA public TO x;",
            "COMMENT ON INDEX public.unknown IS 'x';",
            "COMMENT ON CONSTRAINT c ON DOMAIN public.d IS 'x';",
            "CREATE STATISTICS public.s ON a, b FROM public.t;",
            "SET default_tablespace = '';",
        ] {
            assert_eq!(job(sql, &none), None, "{sql}");
        }
    }

    #[test]
    fn an_index_comment_follows_its_index() {
        let mut indexes = HashMap::new();
        let claim = classify(
            &parse("CREATE INDEX i ON public.t USING btree (a, b);"),
            &indexes,
        )
        .unwrap();
        let (key, table) = claim.index.unwrap();
        assert_eq!(key, "\"public\".\"i\"");
        indexes.insert(key, table);
        assert_eq!(
            job("COMMENT ON INDEX public.i IS 'x';", &indexes),
            x(&["\"public\".\"t\""])
        );
    }

    #[test]
    fn settings() {
        for (sql, setting) in [
            ("SET default_tablespace = '';", true),
            ("SET search_path = public, pg_catalog;", true),
            (
                "SELECT pg_catalog.set_config('search_path', '', false);",
                true,
            ),
            ("SET LOCAL work_mem = '1GB';", false),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;", false),
            (
                "SELECT pg_catalog.set_config('search_path', '', true);",
                false,
            ),
            (
                "SELECT pg_catalog.set_config('a', 'b', false), evil();",
                false,
            ),
            ("SELECT 1;", false),
        ] {
            assert_eq!(is_setting(&parse(sql)), setting, "{sql}");
        }
    }
}
