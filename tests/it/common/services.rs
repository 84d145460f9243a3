//! Real services for tests, demo and benchmarks: PostgreSQL, Redis, an S3 server (moto) and an
//! SMTP sink (aiosmtpd), each on a free loopback port, started at most once per process.
//!
//! Children die with the process: every one is spawned from a keeper thread that lives as long
//! as the process, with PR_SET_PDEATHSIG, and an `atexit` handler stops them gracefully and
//! removes their directories when the test binary exits normally (panicking tests included).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// Test files import the S3 credentials from here too.
pub use super::constants::{S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY};

/// Processes and directories to clean up at exit.
static CLEANUP: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());
static ROOT: OnceLock<PathBuf> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

enum Cleanup {
    Process { pid: i32, signal: i32 },
    Dir(PathBuf),
}

extern "C" fn cleanup_at_exit() {
    let items = std::mem::take(&mut *CLEANUP.lock().unwrap_or_else(|e| e.into_inner()));
    // Processes in reverse start order, then directories.
    for item in items.iter().rev() {
        if let Cleanup::Process { pid, signal } = item {
            stop_process(*pid, *signal);
        }
    }
    for item in items {
        if let Cleanup::Dir(dir) = item {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn stop_process(pid: i32, signal: i32) {
    unsafe { libc::kill(pid, signal) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut status = 0;
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || r == -1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// The per-process scratch directory every service lives under.
pub fn root() -> &'static Path {
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "staging-refresh-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        unsafe { libc::atexit(cleanup_at_exit) };
        CLEANUP.lock().unwrap().push(Cleanup::Dir(dir.clone()));
        dir
    })
}

/// A name unique in this process, for databases, buckets and addresses: `<prefix>_<n>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A bucket name unique across concurrent test processes (S3 names: lowercase, digits, '-').
pub fn unique_bucket(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 60 s");
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from the keeper thread, so PR_SET_PDEATHSIG fires only when the process dies,
/// not when the (short-lived) test thread that asked for it ends.
fn spawn(mut cmd: Command, stop_signal: i32) -> Child {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("service-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static: this thread parks until the process exits.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        Mutex::new(tx)
    });
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    keeper.lock().unwrap().send((cmd, tx)).unwrap();
    let child = rx.recv().unwrap().expect("spawn service");
    CLEANUP.lock().unwrap().push(Cleanup::Process {
        pid: child.id() as i32,
        signal: stop_signal,
    });
    child
}

fn log_to(cmd: &mut Command, log: &Path) {
    let file = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
}

/// PostgreSQL refuses to run as root; when we are root, it runs as `nobody` in `dir`.
fn as_postgres_user(cmd: &mut Command, dir: &Path) {
    if postgres_owns(dir) {
        cmd.uid(NOBODY).gid(NOBODY);
    }
}

const NOBODY: u32 = 65534;

/// Gives `path` to the user PostgreSQL runs as; true when that is `nobody` (we are root).
fn postgres_owns(path: &Path) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    root
}

fn postgres_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server not installed: run scripts/setup")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.last()
        .expect("no /usr/lib/postgresql/*/bin/initdb: run scripts/setup")
        .join(name)
}

/// A PostgreSQL server of its own: superuser `postgres`, trust auth on 127.0.0.1.
pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    pid: AtomicU32,
}

/// Starts the server whose data is in `dir`/data on `port`; returns its pid once it listens.
fn launch(dir: &Path, port: u16) -> u32 {
    let log = dir.join("postgres.log");
    let mut cmd = Command::new(postgres_bin("postgres"));
    cmd.args(["-D", dir.join("data").to_str().unwrap()])
        .args(["-p", &port.to_string(), "-k", dir.to_str().unwrap()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=300"]);
    as_postgres_user(&mut cmd, dir);
    log_to(&mut cmd, &log);
    // SIGINT is PostgreSQL's fast shutdown.
    let mut child = spawn(cmd, libc::SIGINT);
    wait_for_port(port, "postgres", &mut child, &log);
    child.id()
}

impl Postgres {
    pub fn start(name: &str) -> Postgres {
        Postgres::start_with(name, false)
    }

    /// A server that offers TLS, with a self-signed certificate.
    pub fn start_tls(name: &str) -> Postgres {
        Postgres::start_with(name, true)
    }

    fn start_with(name: &str, tls: bool) -> Postgres {
        // Unique: tests in one process may each start a server of the same name.
        let dir = root().join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let mut initdb = Command::new(postgres_bin("initdb"));
        initdb.args(["-D", data.to_str().unwrap()]).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        as_postgres_user(&mut initdb, &dir);
        let out = initdb.stdin(Stdio::null()).output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(data.join("server.key"))
                .arg("-out")
                .arg(data.join("server.crt"))
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            use std::os::unix::fs::PermissionsExt;
            for file in ["server.key", "server.crt"] {
                let path = data.join(file);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                postgres_owns(&path);
            }
            std::fs::write(data.join("postgresql.auto.conf"), "ssl = on\n").unwrap();
        }
        let port = free_port();
        let pg = Postgres {
            port,
            pid: AtomicU32::new(launch(&dir, port)),
            dir,
        };
        pg.wait_ready();
        pg
    }

    /// Stops the server (fast shutdown: sessions are ended) and starts it again on the same
    /// port and data.
    pub fn restart(&self) {
        let pid = self.pid() as i32;
        CLEANUP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !matches!(c, Cleanup::Process { pid: p, .. } if *p == pid));
        stop_process(pid, libc::SIGINT);
        self.pid
            .store(launch(&self.dir, self.port), Ordering::Relaxed);
        self.wait_ready();
    }

    /// Accepting TCP is not accepting queries: waits until the server answers.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.psql("postgres", "SELECT 1").status.success() {
            assert!(Instant::now() < deadline, "postgres never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql; returns its output whatever the outcome.
    pub fn psql(&self, db: &str, sql: &str) -> std::process::Output {
        Command::new(postgres_bin("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-d",
                &self.url(db),
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run psql")
    }

    /// Runs SQL with psql and returns its stdout, panicking with stderr on failure.
    pub fn query(&self, db: &str, sql: &str) -> String {
        let out = self.psql(db, sql);
        assert!(
            out.status.success(),
            "psql failed on {db}: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    }

    pub fn create_db(&self, name: &str) {
        self.query("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    pub fn bin(name: &str) -> PathBuf {
        postgres_bin(name)
    }
}

/// The shared "staging" PostgreSQL server of this process.
pub fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start("postgres-staging"))
}

/// A second server standing in for production (roles there do not exist on staging).
pub fn prod_postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start("postgres-prod"))
}

/// An S3 server (moto) shared by the process; each test uses buckets of its own.
pub struct S3 {
    pub port: u16,
}

impl S3 {
    /// `check_credentials`: reject every request whose access key moto does not know
    /// (moto accepts any credentials by default).
    fn start(check_credentials: bool) -> S3 {
        let port = free_port();
        let dir = root().join(unique("moto"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("moto.log");
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        if check_credentials {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        log_to(&mut cmd, &log);
        let mut child = spawn(cmd, libc::SIGTERM);
        wait_for_port(port, "moto_server", &mut child, &log);
        S3 { port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An aws-sdk-s3 client for setting up and inspecting buckets.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "tests");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new(S3_REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a fresh bucket named after `prefix` and returns its name.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = unique_bucket(prefix);
        self.client()
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        name
    }

    pub async fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.into()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
    }

    /// The TOML lines of a bucket section pointing at this server.
    pub fn bucket_toml(&self, bucket: &str) -> String {
        format!(
            "endpoint = \"{}\"\nregion = \"{S3_REGION}\"\nbucket = \"{bucket}\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\n",
            self.endpoint()
        )
    }
}

pub fn s3() -> &'static S3 {
    static S3_SERVER: OnceLock<S3> = OnceLock::new();
    S3_SERVER.get_or_init(|| S3::start(false))
}

/// An S3 server that checks credentials and knows none: every request is refused.
pub fn s3_checking_credentials() -> &'static S3 {
    static S3_SERVER: OnceLock<S3> = OnceLock::new();
    S3_SERVER.get_or_init(|| S3::start(true))
}

/// An SMTP sink (aiosmtpd) storing every message it receives in a Maildir.
pub struct Smtp {
    pub port: u16,
    maildir: PathBuf,
}

impl Smtp {
    fn start() -> Smtp {
        let port = free_port();
        let dir = root().join("smtp");
        let maildir = dir.join("maildir");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("aiosmtpd.log");
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox", maildir.to_str().unwrap()]);
        log_to(&mut cmd, &log);
        let mut child = spawn(cmd, libc::SIGTERM);
        wait_for_port(port, "aiosmtpd", &mut child, &log);
        Smtp { port, maildir }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    // Only examples/sandbox.rs, which includes this harness, shows it: the tests read the
    // messages with `messages_to`.
    #[allow(dead_code)]
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Raw messages (headers and body) delivered to `recipient`, oldest first.
    pub fn messages_to(&self, recipient: &str) -> Vec<String> {
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let mut text = String::new();
                if std::fs::File::open(entry.path())
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .is_ok()
                    && text.lines().any(|l| {
                        let l = l.to_ascii_lowercase();
                        (l.starts_with("to:") || l.starts_with("x-rcptto:"))
                            && l.contains(&recipient.to_ascii_lowercase())
                    })
                {
                    let modified = entry.metadata().and_then(|m| m.modified()).ok();
                    found.push((modified, text));
                }
            }
        }
        found.sort_by_key(|(m, _)| *m);
        found.into_iter().map(|(_, t)| t).collect()
    }
}

pub fn smtp() -> &'static Smtp {
    static SMTP: OnceLock<Smtp> = OnceLock::new();
    SMTP.get_or_init(Smtp::start)
}

/// A Redis server of the test's own (FLUSHALL empties a whole server, so none is shared).
/// Stopped when dropped.
pub struct Redis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A server started with these extra arguments (e.g. `--requirepass`).
    pub fn start_with(args: &[&str]) -> Redis {
        let port = free_port();
        let dir = root().join(unique("redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", dir.to_str().unwrap()])
            .args(args);
        log_to(&mut cmd, &log);
        let mut child = spawn(cmd, libc::SIGTERM);
        wait_for_port(port, "redis-server", &mut child, &log);
        Redis { port, child, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs a redis-cli command and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        CLEANUP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !matches!(c, Cleanup::Process { pid: p, .. } if *p == pid));
        stop_process(pid, libc::SIGTERM);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
