//! Parallel post-data: a dump with post-data of every kind (tests/fixtures/postdata.sql on
//! top of the production-shaped database) restored on 4 sessions gives staging the schema a
//! sequential restore gives it; a failing statement fails the run with its dump line; what
//! the dump runs in its own transaction stays in it; code of the dump's that ends the
//! restore's other sessions fails the run cleanly; a signal during post-data cancels the
//! run cleanly. A big table's COPY shared between sessions loads every row, masked, and a bad
//! row in it is named by its line in the table's data; a signal during it cancels the run
//! cleanly.

use crate::common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::env::{Env, inject};
use common::fixtures::{dump_sql, seed_prod_with};
use common::staging::PROD_USERS;
use common::{postgres, prod_postgres};

/// The production database with the post-data fixture, dumped once per process.
fn dump() -> &'static [u8] {
    static DUMP: OnceLock<Vec<u8>> = OnceLock::new();
    DUMP.get_or_init(|| {
        seed_prod_with(
            prod_postgres(),
            "app_postdata",
            PROD_USERS,
            &["postdata.sql"],
        );
        dump_sql(prod_postgres(), "app_postdata")
    })
}

/// The fixture's tables hold nothing personal.
const KEEP_FIXTURE_TABLES: &str = "\n[[anonymize.table]]\ntable = \"public.category\"\nmode = \"keep\"\n\
    \n[[anonymize.table]]\ntable = \"public.product_category\"\nmode = \"keep\"\n";

/// An environment restoring `dump` with `restore.jobs = jobs`.
async fn env(dump: &[u8], jobs: usize) -> Env {
    let mut env = Env::new(dump).await;
    env.sections.push_str(KEEP_FIXTURE_TABLES);
    env.sections
        .push_str(&format!("\n[restore]\njobs = {jobs}\n"));
    env
}

/// `pg_dump --schema-only` of staging, without the random `\restrict` key lines.
fn schema(env: &Env) -> String {
    String::from_utf8(common::fixtures::pg_dump(
        env.pg,
        &env.db,
        &["--schema-only"],
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The 1-based line of `text` in `dump`.
fn line_of(dump: &[u8], text: &str) -> usize {
    let dump = std::str::from_utf8(dump).unwrap();
    dump.lines().position(|l| l == text).expect("injected") + 1
}

#[tokio::test]
async fn four_jobs_restore_the_schema_one_job_restores() {
    let (parallel, sequential) = (env(dump(), 4).await, env(dump(), 1).await);
    // One after the other: `init-target`s at once race creating the marker table.
    let (p, s) = (parallel.refresh().await, sequential.refresh().await);
    assert_eq!(p.code, 0, "{p:?}");
    assert_eq!(s.code, 0, "{s:?}");
    // The 4 sessions were used, the 1 alone.
    assert!(p.stderr.contains("sessions=4"), "{p:?}");
    assert!(s.stderr.contains("sessions=1"), "{s:?}");

    let (ps, ss) = (schema(&parallel), schema(&sequential));
    assert!(
        ps.contains("studio_booking_during_excl EXCLUDE USING gist"),
        "{ps}"
    );
    assert!(ps.contains("REFERENCES public.category(code)"), "{ps}");
    assert!(ps.contains("REFERENCES public.category(id)"), "{ps}");
    assert!(
        ps.contains("WHERE (status = 'scheduled'::public.shooting_status)"),
        "{ps}"
    );
    assert!(ps.contains("CREATE TRIGGER category_code_upper"), "{ps}");
    assert!(ps.contains("CREATE POLICY studio_booking_all"), "{ps}");
    assert!(ps.contains("'case-insensitive product search'"), "{ps}");
    assert_eq!(ps, ss);

    // The matview was refreshed after everything: over both tables' data.
    for env in [&parallel, &sequential] {
        assert_eq!(
            env.query("SELECT count(*), sum(products) FROM category_product_counts"),
            format!("40|{}", PROD_USERS * 5)
        );
        // The trigger works on the function from pre-data, the self-reference holds.
        env.query("INSERT INTO category VALUES (41, 'new-code', 40)");
        assert_eq!(
            env.query("SELECT code FROM category WHERE id = 41"),
            "NEW-CODE"
        );
        assert!(
            env.pg
                .psql(&env.db, "INSERT INTO category VALUES (42, 'x', 99)")
                .status
                .code()
                != Some(0)
        );
    }
}

#[tokio::test]
async fn a_failing_unique_index_fails_the_run_with_its_dump_line() {
    let index = "CREATE UNIQUE INDEX product_category_rank_idx \
                 ON public.product_category USING btree (rank);";
    let dump = inject(
        dump(),
        "    ADD CONSTRAINT category_pkey PRIMARY KEY (id);",
        index,
    );
    let env = env(&dump, 4).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, &format!("dump line {}", line_of(&dump, index)));
    assert!(
        out.stderr.contains("could not create unique index"),
        "{out:?}"
    );
}

/// The post-data's figures the run logs (once per run of jobs between barriers), summed:
/// statements and seconds.
fn post_data_logged(stderr: &str) -> (u64, f64) {
    let field = |line: &str, name: &str| {
        let at = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
        line[at..]
            .split(char::is_whitespace)
            .next()
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    stderr
        .lines()
        .filter(|l| l.contains("post-data statements run"))
        .fold((0, 0.0), |(n, s), line| {
            (
                n + field(line, "statements").parse::<u64>().unwrap(),
                s + field(line, "seconds").parse::<f64>().unwrap(),
            )
        })
}

#[tokio::test]
async fn a_hundred_thousand_grants_finish() {
    // Scheduling them must take time linear in their number: each waits for the one before
    // it on its table (60 000 used not to finish in two minutes).
    const GRANTS: u64 = 100_000;
    let tables = ["organization", "product", "shooting", "generation"];
    let grants: String = (0..GRANTS)
        .map(|i| {
            format!(
                "GRANT SELECT ON TABLE public.{} TO PUBLIC;\n",
                tables[i as usize % tables.len()]
            )
        })
        .collect();
    let text = std::str::from_utf8(common::staging::prod_dump()).unwrap();
    let end = text
        .find("\n--\n-- PostgreSQL database dump complete")
        .expect("a complete dump");
    let dump = format!("{}\n{grants}{}", &text[..end], &text[end..]);
    let env = env(dump.as_bytes(), 2).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let (statements, seconds) = post_data_logged(&out.stderr);
    assert!(statements > GRANTS, "{statements}");
    eprintln!("{GRANTS} grants: post-data {statements} statements in {seconds} s");
    assert_eq!(
        env.query("SELECT has_table_privilege('public', 'public.shooting', 'SELECT')"),
        "t"
    );
}

#[tokio::test]
async fn statements_inside_the_dumps_own_transaction_run_in_it() {
    // On a job's session the index would not see the table, created in the transaction and
    // not yet committed.
    let dump = inject(
        dump(),
        "    ADD CONSTRAINT category_pkey PRIMARY KEY (id);",
        "BEGIN;\n\
         CREATE TABLE public.in_transaction (id integer);\n\
         CREATE INDEX in_transaction_id_idx ON public.in_transaction USING btree (id);\n\
         COMMIT;",
    );
    let env = env(&dump, 4).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'in_transaction_id_idx'"),
        "CREATE INDEX in_transaction_id_idx ON public.in_transaction USING btree (id)"
    );
}

#[tokio::test]
async fn a_dump_ending_the_restores_other_sessions_fails_the_run_cleanly() {
    // A superuser configuration logs in as the restore role: every session of the restore is
    // that role, so the dump's code may end the others. That fails the run, nothing else.
    let hostile = "CREATE FUNCTION public.end_others() RETURNS integer LANGUAGE plpgsql \
                   IMMUTABLE AS $f$ BEGIN PERFORM pg_catalog.pg_terminate_backend(pid) \
                   FROM pg_catalog.pg_stat_activity WHERE usename = CURRENT_USER \
                   AND pid <> pg_catalog.pg_backend_pid(); RETURN 0; END $f$;\n\
                   CREATE INDEX category_end_others_idx ON public.category \
                   USING btree ((id + public.end_others()));";
    let dump = inject(
        dump(),
        "    ADD CONSTRAINT category_pkey PRIMARY KEY (id);",
        hostile,
    );
    let mut env = Env::on(postgres(), postgres().url("postgres")).await;
    env.upload(common::fixtures::zstd(&dump), None).await;
    env.sections.push_str(KEEP_FIXTURE_TABLES);
    env.sections.push_str("\n[restore]\njobs = 4\n");
    let out = env.refresh().await;
    // The failure is the session the loader or a job next used (ended, or closed).
    env.assert_failed_cleanly(&out, "restoring");
    assert!(
        [
            "terminating connection due to administrator command",
            "connection closed"
        ]
        .iter()
        .any(|m| out.stderr.contains(m)),
        "{out:?}"
    );
}

/// SIGTERMs the run in `child`: it cancels cleanly, and no session is left on its scratch
/// database.
async fn assert_cancels_leaving_no_session(env: &Env, child: std::process::Child) {
    env.assert_cancels_cleanly(child).await;
    let scratch = format!("{}__refresh", env.db);
    assert_eq!(
        postgres().query(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{scratch}'")
        ),
        "0"
    );
}

#[tokio::test]
async fn sigterm_during_post_data_cancels_cleanly() {
    let slow = "ALTER TABLE ONLY public.studio_booking \
                ADD CONSTRAINT studio_booking_slow CHECK (pg_catalog.pg_sleep(60) IS NOT NULL);";
    let dump = inject(
        dump(),
        "    ADD CONSTRAINT category_pkey PRIMARY KEY (id);",
        slow,
    );
    let env = env(&dump, 4).await;
    assert_eq!(env.run(&["init-target"]).await.code, 0);
    let child = common::spawn(common::command(&env.config(), &["run", "--skip-media"]));
    let scratch = format!("{}__refresh", env.db);
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = env.state_dir().join("state.json");
    // Sleeping in the check constraint, and the progress says so.
    while postgres().query(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = '{scratch}' AND query LIKE '%studio_booking_slow%'"
        ),
    ) == "0"
        || !std::fs::read_to_string(&state)
            .unwrap_or_default()
            .contains("longest running: ALTER TABLE ONLY public.studio_booking ADD CONSTRAINT studio_booking_slow CHECK")
    {
        assert!(Instant::now() < deadline, "the restore never reached the slow constraint");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_cancels_leaving_no_session(&env, child).await;
}

#[tokio::test]
async fn the_jobs_default_to_the_servers_cpu_count_when_it_says() {
    let mut superuser = Env::on(postgres(), postgres().url("postgres")).await;
    superuser.upload(common::fixtures::zstd(dump()), None).await;
    let mut refresh_role = Env::new(dump()).await;
    for env in [&mut superuser, &mut refresh_role] {
        env.sections.push_str(KEEP_FIXTURE_TABLES);
    }
    // The refresh role first: the marker table it creates is then its own.
    let (r, s) = (refresh_role.refresh().await, superuser.refresh().await);
    assert_eq!(s.code, 0, "{s:?}");
    assert!(
        s.stderr
            .contains("restore sessions besides the loader's from the server's CPU count"),
        "{s:?}"
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("jobs=2") && r.stderr.contains("from the fallback"),
        "{r:?}"
    );
}

/// Rows of the big table: about 16 MiB of COPY data, shared among 4 sessions.
const BIG_ROWS: usize = 200_000;
const BIG_RULE: &str = "\n[[anonymize.column]]\ntable = \"public.big\"\ncolumn = \"secret\"\nmask = \"token\"\n\
     \n[[anonymize.column]]\ntable = \"public.big\"\ncolumn = \"payload\"\nmask = \"keep\"\n";

/// The fixture's dump with a table `big` of [`BIG_ROWS`] rows (its line `bad_line` holding
/// `oops` for an id, if given), more columns `extra` (`, name type`) and its primary key.
fn with_big_table(bad_line: Option<usize>, extra: &str) -> Vec<u8> {
    let table =
        format!("CREATE TABLE public.big (id integer NOT NULL, payload text, secret text{extra});");
    let mut data = "COPY public.big (id, payload, secret) FROM stdin;\n".to_owned();
    for id in 1..=BIG_ROWS {
        if Some(id) == bad_line {
            data.push_str("oops");
        } else {
            data.push_str(&id.to_string());
        }
        data.push_str(&format!(
            "\tpayload {id:08} of the big table, kept as it is\ttok_{id}_prodsecret\n"
        ));
    }
    data.push_str("\\.\n");
    // Where pg_dump puts them: the table with the pre-data, its rows first of the data.
    let dump = inject(dump(), "SET row_security = off;", &table);
    let text = std::str::from_utf8(&dump).unwrap();
    let data_starts = text.find("\nCOPY ").expect("the dump has data") + 1;
    let dump = format!("{}{data}{}", &text[..data_starts], &text[data_starts..]).into_bytes();
    inject(
        &dump,
        "    ADD CONSTRAINT category_pkey PRIMARY KEY (id);",
        "ALTER TABLE ONLY public.big ADD CONSTRAINT big_pkey PRIMARY KEY (id);",
    )
}

async fn big_env(dump: &[u8], jobs: usize) -> Env {
    let mut env = env(dump, jobs).await;
    env.sections.push_str(BIG_RULE);
    env
}

#[tokio::test]
async fn a_big_tables_copy_shared_between_sessions_loads_every_row_masked() {
    let dump = with_big_table(None, "");
    let (parallel, sequential) = (big_env(&dump, 4).await, big_env(&dump, 1).await);
    let (p, s) = (parallel.refresh().await, sequential.refresh().await);
    assert_eq!(p.code, 0, "{p:?}");
    assert_eq!(s.code, 0, "{s:?}");
    let rows = "SELECT count(*), count(DISTINCT id), \
                md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM big";
    assert_eq!(parallel.query(rows), sequential.query(rows));
    assert!(
        parallel
            .query(rows)
            .starts_with(&format!("{BIG_ROWS}|{BIG_ROWS}|"))
    );
    // Loaded in several transactions (one per session) on 4 jobs, in one on 1.
    let transactions = "SELECT count(DISTINCT xmin::text) FROM big";
    assert!(parallel.query(transactions).parse::<u32>().unwrap() > 1);
    assert_eq!(sequential.query(transactions), "1");
    for env in [&parallel, &sequential] {
        assert_eq!(
            env.query("SELECT count(*) FROM big WHERE secret LIKE '%prodsecret%'"),
            "0"
        );
        assert_eq!(
            env.query("SELECT count(DISTINCT secret) FROM big"),
            BIG_ROWS.to_string()
        );
    }
}

#[tokio::test]
async fn a_bad_row_deep_in_a_shared_copy_is_named_by_its_line() {
    let bad = BIG_ROWS - 10;
    let dump = with_big_table(Some(bad), "");
    let env = big_env(&dump, 4).await;
    let out = env.refresh().await;
    let copy = line_of(&dump, "COPY public.big (id, payload, secret) FROM stdin;");
    env.assert_failed_cleanly(
        &out,
        &format!("loading COPY data into public.big (COPY at dump line {copy})"),
    );
    assert!(
        out.stderr
            .contains(&format!("COPY big, line {bad}, column id: \"…\"")),
        "{out:?}"
    );
    // The row's value is withheld, from the log too.
    assert!(!out.stderr.contains("oops"), "{out:?}");
}

#[tokio::test]
async fn sigterm_during_a_shared_copy_cancels_cleanly() {
    // Every row's default sleeps: the COPY runs on 4 sessions for minutes.
    let dump = with_big_table(
        None,
        ", slow integer DEFAULT (pg_catalog.pg_sleep(0.001) IS NULL)::integer",
    );
    let mut env = big_env(&dump, 4).await;
    env.sections.push_str(
        "\n[[anonymize.column]]\ntable = \"public.big\"\ncolumn = \"slow\"\nmask = \"keep\"\n",
    );
    assert_eq!(env.run(&["init-target"]).await.code, 0);
    let child = common::spawn(common::command(&env.config(), &["run", "--skip-media"]));
    let scratch = format!("{}__refresh", env.db);
    let sessions = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{scratch}' AND query LIKE 'COPY public.big%'"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while postgres()
        .query("postgres", &sessions)
        .parse::<u32>()
        .unwrap()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the COPY of big never ran on 2 sessions"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_cancels_leaving_no_session(&env, child).await;
}
