//! `daemon`, `trigger` and `status` as systemd and an operator see them: the daemon runs as a
//! child process with NOTIFY_SOCKET on a datagram socket the test owns, against real
//! PostgreSQL and S3; the unit files pass `systemd-analyze verify`.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use common::constants::{PROD_USERS, SENTINEL};
use common::env::Env;
use common::staging::{prod_dump, seed_staging};
use common::{postgres, test_dir, unique};
use staging_refresh::report::RunReport;

const NIGHTLY: &str = "0 0 3 * * *";

/// The test world with a production snapshot and this schedule.
async fn scheduled(dump: &[u8], cron: &str, catch_up: bool) -> Env {
    let mut env = Env::new(dump).await;
    schedule(&mut env, cron, catch_up);
    env
}

/// Rewrites the config with this schedule.
fn schedule(env: &mut Env, cron: &str, catch_up: bool) {
    env.schedule = format!("cron = \"{cron}\"\ncatch_up = {catch_up}\n");
    env.config();
}

fn users(env: &Env) -> String {
    env.query("SELECT count(*) FROM \"user\"")
}

/// The state file, or null while there is none.
fn state(env: &Env) -> serde_json::Value {
    match std::fs::read(env.state_dir().join("state.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => serde_json::Value::Null,
    }
}

fn control_socket(env: &Env) -> PathBuf {
    env.loaded().daemon.control_socket
}

/// Waits (off the runtime's threads) until `ready` holds.
pub(crate) async fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The notify socket systemd would own: every datagram the daemon sends, with its arrival.
pub(crate) struct NotifySocket {
    path: PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    done: Arc<AtomicBool>,
}

impl NotifySocket {
    pub(crate) fn new() -> NotifySocket {
        let path = test_dir("notify").join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (into, stop) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    into.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            path,
            received,
            done,
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// The STATUS= values, in order.
    fn statuses(&self) -> Vec<String> {
        self.messages()
            .iter()
            .flat_map(|(_, m)| m.lines().filter_map(|l| l.strip_prefix("STATUS=")))
            .map(str::to_owned)
            .collect()
    }

    /// Waits for the `n`-th (from 1) datagram holding the line `line`; returns the datagram.
    pub(crate) async fn wait_for(&self, line: &str, n: usize) -> String {
        let has = |m: &String| m.lines().any(|l| l == line);
        wait_until(&format!("{line} #{n}"), Duration::from_secs(60), || {
            self.messages().iter().filter(|(_, m)| has(m)).count() >= n
        })
        .await;
        let messages = self.messages();
        let found = messages.iter().filter(|(_, m)| has(m)).nth(n - 1).unwrap();
        found.1.clone()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// `staging-refresh daemon` as systemd runs it; killed if the test ends without stopping it.
pub(crate) struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(env: &Env, notify: &NotifySocket, watchdog_usec: Option<u64>) -> Daemon {
        let log = test_dir("daemon-log").join("daemon.log");
        let mut cmd = env.command(&["daemon"]);
        cmd.env("NOTIFY_SOCKET", &notify.path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(usec) = watchdog_usec {
            cmd.env("WATCHDOG_USEC", usec.to_string());
        }
        Daemon {
            child: Some(cmd.spawn().unwrap()),
            log,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub(crate) fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (within `timeout`).
    pub(crate) async fn stop(&mut self, timeout: Duration) -> i32 {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the daemon did not exit within {timeout:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The production dump with a pause at the end of the restore, to catch a run in the act.
fn slow_dump(seconds: u32) -> Vec<u8> {
    let dump = std::str::from_utf8(prod_dump()).unwrap();
    let end = dump.rfind("-- PostgreSQL database dump complete").unwrap();
    format!(
        // A bare SELECT is refused: a materialized view's query runs when it is created.
        "{}CREATE MATERIALIZED VIEW public.pause AS SELECT 1 AS x FROM pg_catalog.pg_sleep({seconds});\n{}",
        &dump[..end],
        &dump[end..]
    )
    .into_bytes()
}

async fn wait_for_sleeping_restore(env: &Env) {
    let scratch = format!("{}__refresh", env.db);
    wait_until(
        "the restore to reach pg_sleep",
        Duration::from_secs(60),
        || {
            postgres().query(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = '{scratch}' AND wait_event = 'PgSleep'"
                ),
            ) != "0"
        },
    )
    .await;
}

#[tokio::test]
async fn ready_watchdog_reload_and_stop_speak_systemds_protocol() {
    let mut env = scheduled(prod_dump(), NIGHTLY, true).await;
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start(&env, &notify, Some(400_000));

    let ready = notify.wait_for("READY=1", 1).await;
    assert!(
        ready.contains("STATUS=idle; next refresh "),
        "READY comes with the next run: {ready:?}"
    );
    // Watchdog pings at half of WATCHDOG_USEC (200 ms), never near the 400 ms timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pings: Vec<Instant> = notify
        .messages()
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    assert!(
        (5..=10).contains(&pings.len()),
        "{} pings in 1.5 s",
        pings.len()
    );
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest < Duration::from_millis(350), "a gap of {longest:?}");

    // The control socket: the service's group may use it; it says which protocol it speaks.
    let socket = control_socket(&env);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let mut client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    client
        .write_all(b"{\"version\":2,\"request\":\"status\"}\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains("\"event\":\"error\"") && answer.contains("this daemon speaks 1"),
        "{answer}"
    );

    // `status` has the daemon's view; the state file has the next run too.
    let status = env.run(&["--json", "status"]).await;
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["daemon"]["schedule"], NIGHTLY);
    assert_eq!(status["daemon"]["pid"], daemon.pid());
    let next_run = status["daemon"]["next_run"].as_str().unwrap().to_owned();
    assert!(next_run.contains("T03:00:00"), "{next_run}");
    assert_eq!(state(&env)["next_run"], next_run.as_str());
    let text = env.run(&["status"]).await.stdout;
    assert!(
        text.contains(&format!("daemon: running (pid {})", daemon.pid())),
        "{text}"
    );

    // A bad config on reload: RELOADING, READY, and the old config stays.
    schedule(&mut env, "0 0 3 * *", true);
    daemon.signal(libc::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", 1).await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    notify.wait_for("READY=1", 2).await;
    schedule(&mut env, NIGHTLY, true);
    let status = env.run(&["--json", "status"]).await.json();
    assert_eq!(status["daemon"]["schedule"], NIGHTLY);
    let log = daemon.log();
    assert!(
        log.contains("keeping the previous one") && log.contains("schedule.cron"),
        "{log}"
    );

    // A good one takes effect.
    schedule(&mut env, "0 30 4 * * *", true);
    daemon.signal(libc::SIGHUP);
    notify.wait_for("RELOADING=1", 2).await;
    notify.wait_for("READY=1", 3).await;
    let status = env.run(&["--json", "status"]).await.json();
    assert_eq!(status["daemon"]["schedule"], "0 30 4 * * *");
    assert!(
        status["daemon"]["next_run"]
            .as_str()
            .unwrap()
            .contains("T04:30:00"),
        "{status}"
    );

    // SIGTERM: STOPPING, a clean exit, the socket gone, no next run claimed.
    assert_eq!(daemon.stop(Duration::from_secs(10)).await, 0);
    notify.wait_for("STOPPING=1", 1).await;
    assert!(!socket.exists());
    assert!(state(&env)["next_run"].is_null(), "{}", state(&env));
    let text = env.run(&["status"]).await.stdout;
    assert!(text.contains("daemon: not running"), "{text}");
}

/// A masking rule `check` refuses is refused on reload too: the daemon logs it, keeps its
/// previous config (schedule and rules) and its next refresh runs on it.
#[tokio::test]
async fn a_reload_with_an_invalid_masking_rule_keeps_the_previous_config() {
    let mut env = scheduled(prod_dump(), NIGHTLY, false).await;
    env.init_target().await;
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start(&env, &notify, None);
    notify.wait_for("READY=1", 1).await;

    // The file gains a new schedule and a rule with an unknown mask: `check` refuses it.
    env.anonymize = "[[anonymize.column]]\ntable = \"public.organization\"\n\
                     column = \"name\"\nmask = \"scramble\"\n"
        .into();
    schedule(&mut env, "0 30 4 * * *", false);
    let check = env.run(&["check"]).await;
    assert_eq!(check.code, 2, "{check:?}");
    assert!(
        check.stderr.contains("anonymize.column[0].mask") && check.stderr.contains("scramble"),
        "{check:?}"
    );

    // So does the daemon's reload, naming the key, and it keeps running.
    daemon.signal(libc::SIGHUP);
    notify.wait_for("RELOADING=1", 1).await;
    notify.wait_for("READY=1", 2).await;
    let log = daemon.log();
    assert!(
        log.contains("keeping the previous one")
            && log.contains("anonymize.column[0].mask")
            && log.contains("unknown mask \"scramble\""),
        "{log}"
    );

    // The file put back as it was: the daemon still has its previous schedule, and its next
    // refresh, on its previous rules, succeeds.
    env.anonymize.clear();
    schedule(&mut env, NIGHTLY, false);
    let status = env.run(&["--json", "status"]).await.json();
    assert_eq!(status["daemon"]["schedule"], NIGHTLY, "{status}");
    let run = env.run(&["trigger", "--wait"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(users(&env), PROD_USERS.to_string());
    assert_eq!(daemon.stop(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn a_per_second_schedule_fires_a_real_refresh_with_a_status_per_phase() {
    let env = scheduled(prod_dump(), "* * * * * *", false).await;
    env.init_target().await;
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start(&env, &notify, None);
    wait_until("a successful run", Duration::from_secs(120), || {
        !state(&env)["last_success"].is_null()
    })
    .await;
    // The daemon serves what the run left behind, and when it runs next.
    let scraped = common::scrape(env.metrics).await;
    assert!(
        common::value(
            &scraped,
            r#"staging_refresh_runs_total{kind="refresh",outcome="ok"}"#
        ) >= 1.0
    );
    let next_run = common::value(&scraped, "staging_refresh_next_run_timestamp_seconds");
    assert!(
        next_run >= Utc::now().timestamp() as f64 - 2.0,
        "{scraped:?}"
    );
    assert_eq!(daemon.stop(Duration::from_secs(60)).await, 0);

    assert_eq!(users(&env), PROD_USERS.to_string());
    let statuses = notify.statuses();
    let first_run: Vec<&str> = statuses
        .iter()
        .map(String::as_str)
        .skip_while(|s| !s.starts_with("prepare"))
        .take(6)
        .collect();
    let snapshot = &env.snapshot;
    for (status, expected) in first_run.iter().zip([
        "prepare (run ".to_owned(),
        format!("restore: {snapshot} (run "),
        format!("anonymize: {snapshot} (run "),
        format!("cutover: {snapshot} (run "),
        format!("cleanup: {snapshot} (run "),
        "idle; next refresh ".to_owned(),
    ]) {
        assert!(status.starts_with(&expected), "{status:?} in {statuses:?}");
    }
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
}

#[tokio::test]
async fn catch_up_refreshes_at_start_after_a_missed_run_and_only_then() {
    let env = scheduled(prod_dump(), NIGHTLY, true).await;
    env.init_target().await;
    // The last success was three days ago: last night's 03:00 run was missed.
    let long_ago = Utc::now() - chrono::Duration::days(3);
    std::fs::create_dir_all(env.state_dir()).unwrap();
    let mut last = serde_json::to_value(RunReport::new("long-ago".into())).unwrap();
    last["finished_at"] = serde_json::json!(long_ago);
    std::fs::write(
        env.state_dir().join("state.json"),
        serde_json::json!({ "last": last, "last_success": last }).to_string(),
    )
    .unwrap();
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start(&env, &notify, None);
    wait_until("the catch-up run", Duration::from_secs(120), || {
        state(&env)["last_success"]["run_id"] != "long-ago"
    })
    .await;
    assert_eq!(daemon.stop(Duration::from_secs(60)).await, 0);
    assert_eq!(users(&env), PROD_USERS.to_string());
    assert!(daemon.log().contains("a scheduled run was missed"));

    // Up again with that success recorded: nothing was missed, nothing runs.
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start(&env, &notify, None);
    notify.wait_for("READY=1", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(daemon.stop(Duration::from_secs(10)).await, 0);
    let statuses = notify.statuses();
    assert!(
        statuses
            .iter()
            .all(|s| s.starts_with("idle") || s == "stopping"),
        "{statuses:?}"
    );
}

/// A daemon whose refresh, started by `trigger --wait` (returned, still waiting), sleeps
/// `seconds` at the end of its restore and is there now.
async fn daemon_mid_restore(seconds: u32) -> (Env, NotifySocket, Daemon, Child) {
    let env = scheduled(&slow_dump(seconds), NIGHTLY, false).await;
    env.init_target().await;
    let notify = NotifySocket::new();
    let daemon = Daemon::start(&env, &notify, None);
    notify.wait_for("READY=1", 1).await;
    let waiting = common::spawn(env.command(&["trigger", "--wait"]));
    wait_for_sleeping_restore(&env).await;
    (env, notify, daemon, waiting)
}

#[tokio::test]
async fn trigger_during_a_run_is_already_running_and_wait_exits_with_the_outcome() {
    let (mut env, notify, mut daemon, waiting) = daemon_mid_restore(3).await;
    let status = env.run(&["--json", "status"]).await;
    assert_eq!(status.code, 0, "{status:?}");
    let running = status.json()["running"].clone();
    assert_eq!(running["phase"], "restore", "{running}");
    assert_eq!(running["snapshot"], env.snapshot.as_str());
    assert_eq!(running["pid"], daemon.pid());
    assert!(
        running["progress"]["done"].as_u64().unwrap() > 0,
        "{running}"
    );
    let run_id = running["run_id"].as_str().unwrap().to_owned();

    // A second trigger is told who runs; a `run` by hand finds the lock held.
    let second = env.run(&["trigger"]).await;
    assert_eq!(second.code, 4, "{second:?}");
    assert!(
        second.stderr.contains("already running") && second.stderr.contains(&run_id),
        "{second:?}"
    );
    let by_hand = env.run(&["run", "--skip-media"]).await;
    assert_eq!(by_hand.code, 4, "{by_hand:?}");

    let waited = common::finish(waiting).await;
    assert_eq!(waited.code, 0, "{waited:?}");
    assert!(
        waited
            .stderr
            .contains(&format!("phase restore: {}", env.snapshot))
            && waited.stderr.contains("phase cutover")
            && waited.stdout.starts_with("Staging refresh OK\n")
            && waited.stdout.contains(&format!("Run {run_id} on ")),
        "{waited:?}"
    );
    assert_eq!(users(&env), PROD_USERS.to_string());

    // Reloaded onto a database that never opted in: the guard refuses, exit 3.
    let unmarked = unique("app");
    seed_staging(postgres(), &unmarked);
    env.db = unmarked.clone();
    env.config();
    daemon.signal(libc::SIGHUP);
    notify.wait_for("READY=1", 2).await;
    let refused = env.run(&["trigger", "--wait"]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("not marked"), "{refused:?}");
    assert_eq!(
        postgres().query(&unmarked, "SELECT note FROM sentinel"),
        SENTINEL
    );
    assert_eq!(daemon.stop(Duration::from_secs(10)).await, 0);
}

/// Fifty operators (or scripts) at once during a run: every `status` sees the run, every
/// `trigger` is told it is already running; none queues a second refresh or runs one itself.
#[tokio::test]
async fn fifty_concurrent_triggers_and_statuses_during_a_run_are_all_answered() {
    let (env, _notify, mut daemon, waiting) = daemon_mid_restore(15).await;

    let status = env.run(&["--json", "status"]).await;
    let run_id = status.json()["running"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in {status:?}"))
        .to_owned();

    let calls: Vec<_> = (0..50)
        .map(|i| {
            let args: &'static [&'static str] = if i % 2 == 0 {
                &["--json", "status"]
            } else {
                &["trigger", "now"]
            };
            let config = env.config();
            tokio::spawn(async move { (args, common::run(&config, args).await) })
        })
        .collect();
    for call in calls {
        let (args, out) = call.await.unwrap();
        if args[0] == "trigger" {
            assert_eq!(out.code, 4, "{out:?}");
            assert!(
                out.stderr.contains("already running") && out.stderr.contains(&run_id),
                "{out:?}"
            );
        } else {
            assert_eq!(out.code, 0, "{out:?}");
            let running = out.json()["running"].clone();
            assert_eq!(running["run_id"], run_id.as_str(), "{running}");
            assert_eq!(running["pid"], daemon.pid(), "{running}");
        }
    }

    let waited = common::finish(waiting).await;
    assert_eq!(waited.code, 0, "{waited:?}");
    assert_eq!(users(&env), PROD_USERS.to_string());
    // One refresh ran: the state counts exactly one run.
    assert_eq!(state(&env)["totals"]["runs"]["ok"], 1, "{}", state(&env));
    assert_eq!(daemon.stop(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn sigterm_mid_restore_cancels_and_leaves_staging_unchanged() {
    let (env, notify, mut daemon, waiting) = daemon_mid_restore(60).await;

    let stopped = Instant::now();
    assert_eq!(daemon.stop(Duration::from_secs(30)).await, 0);
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        stopped.elapsed()
    );
    let stopping = notify.wait_for("STOPPING=1", 1).await;
    assert!(stopping.contains("cancelling the refresh"), "{stopping:?}");
    let waited = common::finish(waiting).await;
    assert_eq!(waited.code, 1, "{waited:?}");
    assert!(
        waited
            .stderr
            .contains("cancelled by a signal before cutover"),
        "{waited:?}"
    );
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert_eq!(state(&env)["last"]["outcome"], "cancelled");
}

/// `trigger --wait` returns when the refresh ends, and the next trigger starts one at once,
/// even while the first one's email is still on its way (to a server that never answers).
#[tokio::test]
async fn the_next_trigger_starts_while_the_last_email_is_still_being_sent() {
    let silent_smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = scheduled(prod_dump(), NIGHTLY, false).await;
    env.sections.push_str(&format!(
        "\n[notify]\nsmtp_url = \"smtp://{}\"\nfrom = \"sr@staging.test\"\nto = [\"admin@staging.test\"]\n",
        silent_smtp.local_addr().unwrap()
    ));
    env.init_target().await;
    let notify = NotifySocket::new();
    let _daemon = Daemon::start(&env, &notify, None);
    notify.wait_for("READY=1", 1).await;
    for _ in 0..2 {
        let out = env.run(&["trigger", "--wait"]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    assert_eq!(state(&env)["totals"]["runs"]["ok"], 2, "{}", state(&env));
}

#[tokio::test]
async fn trigger_with_the_daemon_down_runs_the_refresh_itself() {
    let env = scheduled(prod_dump(), NIGHTLY, false).await;
    env.init_target().await;
    // A socket left behind by a daemon that died: nobody answers on it.
    let socket = control_socket(&env);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let out = env.run(&["trigger", "--wait", "now"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("running the refresh here"), "{out:?}");
    assert!(out.stdout.starts_with("Staging refresh OK\n"), "{out:?}");
    assert_eq!(users(&env), PROD_USERS.to_string());
    assert_eq!(state(&env)["last"]["outcome"], "ok");
}

/// The shipped units with `ExecStart` pointing at the binary under test, in `dir`.
fn units_for_test(dir: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for name in ["staging-refresh.service", "staging-refresh@.service"] {
        let text = std::fs::read_to_string(shipped.join(name)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/staging-refresh ")
                && text.contains("\nUser=staging-refresh\n"),
            "{name} must run /usr/bin/staging-refresh as staging-refresh"
        );
        let text = text.replace(
            "/usr/bin/staging-refresh",
            &common::binary()
                .canonicalize()
                .unwrap()
                .display()
                .to_string(),
        );
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[tokio::test]
async fn the_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    let dir = test_dir("units");
    units_for_test(&dir);
    for unit in ["staging-refresh.service", "staging-refresh@now.service"] {
        let out = Command::new("systemd-analyze")
            .args(["verify", unit])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{unit}: {stderr}");
        assert!(
            !stderr.contains("staging-refresh"),
            "{unit} has warnings: {stderr}"
        );
    }
}
