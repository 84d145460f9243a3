//! The fault matrix: the binary SIGKILLed at every phase boundary and in the middle of the
//! restore, the anonymization transaction, the cutover and the media passes (through the
//! debug-build hook `STAGING_REFRESH_FAULT`, see src/fault.rs); PostgreSQL restarted
//! mid-restore; the snapshot stream cut mid-object; Redis down at cutover; the backend's
//! start command failing; the state directory unwritable. After each, `<name>` is a whole
//! database serving either its previous data or completely anonymized new data (never a
//! production email), the next start repairs what was left and says so, the next run
//! succeeds, and nothing is left behind.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::constants::{PROD_USERS, SENTINEL};
use common::env::{Env, bucket_contents, health_server, with_media};
use common::proxy::{Proxy, ProxyOptions};
use common::staging::{create_roles, prod_dump, refresh_url};
use common::{Postgres, Redis, paused, s3};
use staging_refresh::lock::RunLock;

/// Production emails that must never be visible in staging.
const LEAKED: &str = "SELECT count(*) FROM \"user\" \
                      WHERE email LIKE 'customer%@example-customer.com' OR email LIKE '%@shootify.io'";

/// What `<name>` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    Previous,
    New,
}

/// What `<name>` serves; panics unless it is one of the two, whole.
fn serving(env: &Env) -> Serving {
    let tables = env.query(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
         WHERE schemaname = 'public'",
    );
    if tables == "sentinel" {
        assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
        return Serving::Previous;
    }
    assert_eq!(env.query(LEAKED), "0", "production emails in {}", env.db);
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\""),
        PROD_USERS.to_string(),
        "{} is neither the previous data nor the whole new data: {tables}",
        env.db
    );
    Serving::New
}

/// The oid of the database named `<name>`: renames keep oids, so it says which one it is
/// even while it refuses connections.
fn live_oid(env: &Env) -> String {
    let oid = env.pg.query(
        "postgres",
        &format!("SELECT oid FROM pg_database WHERE datname = '{}'", env.db),
    );
    assert!(!oid.is_empty(), "no database {} at all", env.db);
    oid
}

/// `staging-refresh --config <config> <args>` with `fault` set, not waited for.
fn spawn(env: &Env, args: &[&str], fault: &str) -> Child {
    let mut cmd = env.command(args);
    cmd.env(staging_refresh::fault::VAR, fault);
    common::spawn(cmd)
}

/// Runs with `<point>:kill` and checks the process died there, by SIGKILL.
async fn killed_at(env: &Env, args: &[&str], point: &str) {
    let child = spawn(env, args, &format!("{point}:kill"));
    let out = common::finish(child).await;
    assert_eq!(
        out.signal,
        Some(libc::SIGKILL),
        "not killed at {point}: {out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("fault injection: kill at {point}")),
        "{out:?}"
    );
}

fn signal(child: &Child, signal: i32) {
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// A run that only recovers: the named snapshot does not exist, so it stops right after the
/// recovery every run starts with. Returns the report.
async fn recover_only(env: &Env) -> serde_json::Value {
    let out = env
        .run(&[
            "--json",
            "run",
            "--skip-media",
            "--snapshot",
            "no-such-snapshot",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no-such-snapshot not found"), "{out:?}");
    out.json()
}

/// Nothing left behind: no scratch database, no flag, no journal, the lock free and naming
/// nobody, every database accepting connections, no process of this test's config running.
fn assert_nothing_left(env: &Env) {
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert!(
        !env.state_dir().join("maintenance.json").exists(),
        "flag left"
    );
    assert!(
        !env.state_dir().join("journal.json").exists(),
        "journal left"
    );
    let lock = lock_path(env);
    let taken = RunLock::acquire(&lock, "check").unwrap();
    assert_eq!(taken.stale(), None);
    // This test's databases only (`<name>` and `<name>__*`): other tests' (`app_10` beside
    // `app_1`) may be mid-cutover, refusing connections, on the shared server.
    assert_eq!(
        env.pg.query(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database \
                 WHERE (datname = '{0}' OR starts_with(datname, '{0}__')) AND NOT datallowconn",
                env.db
            )
        ),
        "0"
    );
    let config = env.dir.join("config.toml").display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(&config),
            "a process is still running: {cmdline}"
        );
    }
}

fn lock_path(env: &Env) -> PathBuf {
    if env.daemon.contains("lock_file") {
        env.dir.join("refresh.lock")
    } else {
        env.state_dir().join("refresh.lock")
    }
}

/// The next run succeeds, on new data, leaving nothing behind.
async fn next_run_succeeds(env: &Env, args: &[&str]) {
    let out = env.run(args).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(serving(env), Serving::New);
    assert_nothing_left(env);
}

/// A staging environment with Redis (holding a stale key) and a health URL, opted in.
async fn environment() -> (Env, Redis) {
    let mut env = Env::new(prod_dump()).await;
    let redis = Redis::start();
    redis.cli(&["SET", "celery-task", "stale"]);
    env.sections.push_str(&format!(
        "health_url = \"{}\"\n\n[redis]\nurl = \"{}\"\n",
        health_server().await,
        redis.url()
    ));
    env.init_target().await;
    (env, redis)
}

/// SIGKILL at `point` of a database refresh; then the recovery's report names `found`, and
/// `<name>` serves `expected`.
async fn kill_refresh_at(point: &str, expected: Serving, found: &[&str]) {
    let (env, redis) = environment().await;
    let before = live_oid(&env);
    killed_at(&env, &["run", "--skip-media"], point).await;
    // Whatever the point, `<name>` is one whole database: the old one, or the swapped-in one.
    let swapped = live_oid(&env) != before;
    assert_eq!(swapped, expected == Serving::New, "at {point}");

    let report = recover_only(&env).await;
    let recovered = report["recovered"].to_string();
    for text in found {
        assert!(recovered.contains(text), "{text:?} not in {recovered}");
    }
    assert_eq!(serving(&env), expected, "after recovering from {point}");
    if expected == Serving::New {
        assert_eq!(redis.cli(&["DBSIZE"]), "0", "redis not flushed");
    }
    assert!(env.backend_log().ends_with("start\n") || env.backend_log().is_empty());
    assert_nothing_left(&env);
    let status = env.run(&["--json", "status"]).await.json();
    assert_eq!(status["recovered"], report["recovered"], "{status}");
    let text = env.run(&["status"]).await.stdout;
    assert!(text.contains("recovered "), "{text}");
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

const DROPPED: &str = "dropped the scratch database";
const NOT_COMMITTED: &str = "the swap had not committed";
const COMMITTED: &str = "the swap had committed";

#[tokio::test]
async fn killed_entering_the_restore() {
    kill_refresh_at(
        "phase.restore",
        Serving::Previous,
        &[DROPPED, "restoring into"],
    )
    .await;
}

#[tokio::test]
async fn killed_after_creating_the_scratch_database() {
    kill_refresh_at("restore.scratch-created", Serving::Previous, &[DROPPED]).await;
}

#[tokio::test]
async fn killed_mid_restore() {
    kill_refresh_at("restore.copied-table", Serving::Previous, &[DROPPED]).await;
}

#[tokio::test]
async fn killed_entering_the_anonymization() {
    kill_refresh_at("phase.anonymize", Serving::Previous, &[DROPPED]).await;
}

#[tokio::test]
async fn killed_inside_the_anonymization_transaction() {
    kill_refresh_at("anonymize.before-commit", Serving::Previous, &[DROPPED]).await;
}

#[tokio::test]
async fn killed_after_the_anonymization_committed() {
    kill_refresh_at("anonymize.committed", Serving::Previous, &[DROPPED]).await;
}

#[tokio::test]
async fn killed_entering_the_cutover() {
    kill_refresh_at("phase.cutover", Serving::Previous, &[DROPPED]).await;
}

#[tokio::test]
async fn killed_with_the_flag_raised() {
    kill_refresh_at(
        "cutover.flag-raised",
        Serving::Previous,
        &[NOT_COMMITTED, DROPPED, "removed the maintenance flag"],
    )
    .await;
}

#[tokio::test]
async fn killed_with_the_backend_stopped() {
    kill_refresh_at(
        "cutover.backend-stopped",
        Serving::Previous,
        &[NOT_COMMITTED, DROPPED, "started the backend"],
    )
    .await;
}

/// The two renames are one transaction: killed between them, neither happened.
#[tokio::test]
async fn killed_between_the_renames() {
    kill_refresh_at(
        "cutover.between-renames",
        Serving::Previous,
        &[NOT_COMMITTED, DROPPED, "started the backend"],
    )
    .await;
}

#[tokio::test]
async fn killed_right_after_the_swap() {
    kill_refresh_at(
        "cutover.swapped",
        Serving::New,
        &[COMMITTED, "redis was flushed", "started the backend"],
    )
    .await;
}

#[tokio::test]
async fn killed_after_flushing_redis() {
    kill_refresh_at(
        "cutover.redis-flushed",
        Serving::New,
        &[COMMITTED, "started the backend"],
    )
    .await;
}

#[tokio::test]
async fn killed_after_starting_the_backend() {
    kill_refresh_at(
        "cutover.backend-started",
        Serving::New,
        &[COMMITTED, "removed the maintenance flag"],
    )
    .await;
}

#[tokio::test]
async fn killed_after_lowering_the_flag() {
    kill_refresh_at("cutover.flag-lowered", Serving::New, &[COMMITTED]).await;
}

#[tokio::test]
async fn killed_entering_the_cleanup() {
    kill_refresh_at(
        "phase.cleanup",
        Serving::New,
        &["the kernel released its lock"],
    )
    .await;
}

/// SIGKILL inside a media pass, with the database refresh beside it.
async fn kill_media_at(point: &str, expected: Serving, found: &str) {
    let (mut env, _redis) = environment().await;
    let (prod, staging) = with_media(&mut env, None).await;
    env.init_target().await;
    killed_at(&env, &["run"], point).await;
    let report = recover_only(&env).await;
    assert!(
        report["recovered"].to_string().contains(found),
        "{found:?} not in {report}"
    );
    assert_eq!(serving(&env), expected);
    assert_nothing_left(&env);
    next_run_succeeds(&env, &["run"]).await;
    let mut mirrored = bucket_contents(&staging).await;
    mirrored.retain(|(k, _)| k != staging_refresh::media::MARKER_KEY);
    assert_eq!(mirrored, bucket_contents(&prod).await);
}

#[tokio::test]
async fn killed_mid_media_copy_pass() {
    kill_media_at(
        "media.copied-object",
        Serving::Previous,
        "the media copy pass was interrupted",
    )
    .await;
}

#[tokio::test]
async fn killed_mid_media_delete_pass() {
    kill_media_at(
        "media.deleting-batch",
        Serving::New,
        "the media delete pass was interrupted",
    )
    .await;
}

/// The rollback's three renames are one transaction too.
#[tokio::test]
async fn a_rollback_killed_between_its_renames_is_undone_and_the_next_one_succeeds() {
    let (env, _redis) = environment().await;
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
    let before = live_oid(&env);
    killed_at(&env, &["rollback"], "cutover.between-renames").await;
    assert_eq!(live_oid(&env), before, "a rename committed alone");
    let again = env.run(&["rollback"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains(NOT_COMMITTED) && again.stdout.contains("rolled back"),
        "{again:?}"
    );
    assert_eq!(serving(&env), Serving::Previous);
    assert_eq!(env.pg.query(&format!("{}__previous", env.db), LEAKED), "0");
    assert_nothing_left(&env);
}

#[tokio::test]
async fn the_daemon_recovers_at_start_before_any_run() {
    let (env, _redis) = environment().await;
    killed_at(&env, &["run", "--skip-media"], "cutover.backend-stopped").await;
    assert!(env.state_dir().join("maintenance.json").exists());
    let mut daemon = spawn(&env, &["daemon"], "");
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.state_dir().join("maintenance.json").exists() {
        assert!(Instant::now() < deadline, "the daemon did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        env.backend_log().ends_with("stop\nstart\n"),
        "{}",
        env.backend_log()
    );
    // The flag goes first; then the daemon removes the journal and records its recovery in
    // the state file, which status reads: a busy machine shows the gap.
    let status = loop {
        let status = env.run(&["--json", "status"]).await.json();
        if !status["recovered"].is_null() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not record its recovery"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status["recovered"].to_string().contains(NOT_COMMITTED),
        "{status}"
    );
    signal(&daemon, libc::SIGTERM);
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
    assert_eq!(serving(&env), Serving::Previous);
    assert_nothing_left(&env);
}

#[tokio::test]
async fn postgres_restarted_mid_restore_fails_the_run_and_the_next_succeeds() {
    let pg: &'static Postgres = Box::leak(Box::new(Postgres::start("postgres-restarted")));
    create_roles(pg);
    let env = Env::on(pg, refresh_url(pg)).await;
    env.upload(common::fixtures::zstd(prod_dump()), None).await;
    env.init_target().await;
    let child = spawn(&env, &["run", "--skip-media"], "restore.copied-table:pause");
    paused(&child).await;
    pg.restart();
    signal(&child, libc::SIGCONT);
    let out = common::finish(child).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(serving(&env), Serving::Previous);
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

#[tokio::test]
async fn a_snapshot_stream_cut_mid_object_fails_cleanly_and_the_next_run_succeeds() {
    let env = Env::new(prod_dump()).await;
    env.init_target().await;
    let size = common::fixtures::zstd(prod_dump()).len() as u64;
    let proxy = Proxy::start(
        s3().port,
        ProxyOptions {
            cut_object: Some((".sql.zst", size / 2)),
            ..Default::default()
        },
    )
    .await;
    let text = std::fs::read_to_string(env.config()).unwrap().replacen(
        &s3().endpoint(),
        &proxy.endpoint(),
        1,
    );
    let config = common::write_config(&text);
    let out = common::run(&config, &["run", "--skip-media"]).await;
    assert_eq!(proxy.faults(), 1);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("downloading the snapshot"), "{out:?}");
    assert_eq!(serving(&env), Serving::Previous);
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    let again = common::run(&config, &["run", "--skip-media"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(serving(&env), Serving::New);
    assert_nothing_left(&env);
}

/// Killed after the swap with Redis down: the recovery cannot complete the cutover without a
/// flush (queued jobs would refer to the old data), so it undoes the swap.
#[tokio::test]
async fn redis_down_at_a_recovered_cutover_undoes_the_swap() {
    let mut env = Env::new(prod_dump()).await;
    env.init_target().await;
    // Without Redis configured the swap goes through; then Redis is configured, and down.
    killed_at(&env, &["run", "--skip-media"], "cutover.swapped").await;
    let backend = env.sections.clone();
    let dead = common::services::free_port();
    env.sections.push_str(&format!(
        "\n[redis]\nurl = \"redis://127.0.0.1:{dead}/0\"\n"
    ));
    let report = recover_only(&env).await;
    assert!(
        report["recovered"]
            .to_string()
            .contains("redis cannot be flushed"),
        "{report}"
    );
    assert_eq!(serving(&env), Serving::Previous);
    assert_nothing_left(&env);
    let redis = Redis::start();
    env.sections = format!("{backend}\n[redis]\nurl = \"{}\"\n", redis.url());
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

#[tokio::test]
async fn a_failing_backend_start_at_cutover_leaves_the_new_data_and_the_next_run_succeeds() {
    let mut env = Env::new(prod_dump()).await;
    let working = env.sections.clone();
    env.sections = working.replace("echo start >>", "exit 3; echo >>");
    let out = env.refresh().await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("backend start command") && out.stderr.contains("rollback"),
        "{out:?}"
    );
    assert_eq!(out.json()["snapshot_live"], true);
    assert_eq!(serving(&env), Serving::New);
    assert_nothing_left(&env);
    env.sections = working;
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

#[tokio::test]
async fn a_failing_backend_start_keeps_the_flag_until_a_recovery_brings_it_back() {
    let mut env = Env::new(prod_dump()).await;
    env.init_target().await;
    killed_at(&env, &["run", "--skip-media"], "cutover.backend-stopped").await;
    let working = env.sections.clone();
    env.sections = working.replace("echo start >>", "exit 3; echo >>");
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("which died") && out.stderr.contains("backend start command"),
        "{out:?}"
    );
    assert!(
        env.state_dir().join("maintenance.json").exists(),
        "flag lowered on a dead backend"
    );
    assert!(env.state_dir().join("journal.json").exists());
    env.sections = working;
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

/// The state directory cannot be written (a full or read-only disk): as root an immutable
/// directory (root ignores permissions), otherwise one without write permission.
struct Unwritable(PathBuf);

impl Unwritable {
    fn make(dir: &Path) -> Unwritable {
        std::fs::create_dir_all(dir).unwrap();
        set_writable(dir, false);
        Unwritable(dir.to_owned())
    }
}

fn set_writable(dir: &Path, writable: bool) {
    if unsafe { libc::geteuid() } == 0 {
        let flag = if writable { "-i" } else { "+i" };
        let out = Command::new("chattr").arg(flag).arg(dir).output().unwrap();
        assert!(out.status.success(), "chattr: {out:?}");
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = if writable { 0o755 } else { 0o555 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        set_writable(&self.0, true);
    }
}

/// The env with its lock file outside the state directory (the lock alone would fail first).
async fn env_with_lock_outside() -> Env {
    let mut env = Env::new(prod_dump()).await;
    env.daemon = format!(
        "lock_file = \"{}\"\n",
        env.dir.join("refresh.lock").display()
    );
    env.init_target().await;
    env
}

#[tokio::test]
async fn an_unwritable_state_dir_refuses_the_run_before_any_change() {
    let env = env_with_lock_outside().await;
    let state = env.state_dir();
    let guard = Unwritable::make(&state);
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot record the run's progress")
            && out
                .stderr
                .contains(&state.join("journal.json").display().to_string()),
        "{out:?}"
    );
    assert_eq!(serving(&env), Serving::Previous);
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert_eq!(env.backend_log(), "", "the backend was touched");
    drop(guard);
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

#[tokio::test]
async fn a_state_dir_turning_unwritable_mid_run_stops_it_before_the_cutover() {
    let env = env_with_lock_outside().await;
    let child = spawn(&env, &["run", "--skip-media"], "anonymize.committed:pause");
    paused(&child).await;
    let guard = Unwritable::make(&env.state_dir());
    signal(&child, libc::SIGCONT);
    let out = common::finish(child).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot record the run's progress"),
        "{out:?}"
    );
    assert_eq!(serving(&env), Serving::Previous);
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert_eq!(env.backend_log(), "", "the backend was touched");
    drop(guard);
    next_run_succeeds(&env, &["run", "--skip-media"]).await;
}

#[tokio::test]
async fn a_run_killed_mid_restore_has_its_restore_login_taken_back_at_the_next_start() {
    // A superuser sets the restore role a password for each run (a server of its own: the
    // opt-in marker table it creates is the superuser's).
    let pg: &'static Postgres = Box::leak(Box::new(Postgres::start("postgres-superuser")));
    create_roles(pg);
    let env = Env::on(pg, pg.url("postgres")).await;
    env.upload(common::fixtures::zstd(prod_dump()), None).await;
    env.init_target().await;
    let login = || {
        pg.query(
            "postgres",
            &format!(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}_restore'",
                env.db
            ),
        )
    };
    pg.query(
        "postgres",
        &format!("ALTER ROLE \"{}_restore\" NOLOGIN PASSWORD NULL", env.db),
    );
    killed_at(&env, &["run", "--skip-media"], "restore.scratch-created").await;
    assert_eq!(login(), "t");
    let report = recover_only(&env).await;
    assert!(
        report["recovered"]
            .to_string()
            .contains("took back the restore role"),
        "{report}"
    );
    assert_eq!(login(), "f");
    assert_nothing_left(&env);
}
