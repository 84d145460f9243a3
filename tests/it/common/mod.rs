//! Shared by the integration tests (this binary), the demo sandbox and the benchmarks.
//!
//! A test builds on the test world, [`env::Env`]: its own staging database and snapshot
//! bucket on the services started once per process (`services`), and a config made of the
//! sections the test varies (its fields), then `run`, `refresh`, `init_target` and `query`.
//! The names and secrets that config and the fixtures use are in `constants`.

pub mod constants;
pub mod env;
pub mod fixtures;
pub mod gpg;
pub mod proxy;
pub mod services;
pub mod sink;
pub mod staging;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Output, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use services::{Postgres, Redis, postgres, prod_postgres, s3, smtp, unique};

/// The built `staging-refresh` binary (Cargo names it for tests; examples find it beside them).
pub fn binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_staging-refresh") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().join("../staging-refresh")
        }
    }
}

/// What a run of the binary printed and how it ended.
pub struct Run {
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The run report's PII findings, each `table.column kind by count` (what an operator
    /// reads).
    pub fn findings(&self) -> Vec<String> {
        findings(&self.json())
    }
}

/// `report`'s PII findings, each `table.column kind by count`.
pub fn findings(report: &serde_json::Value) -> Vec<String> {
    report["pii_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}.{} {} {} {}",
                f["table"].as_str().unwrap(),
                f["column"].as_str().unwrap(),
                f["kind"].as_str().unwrap(),
                f["by"].as_str().unwrap(),
                f["count"]
            )
        })
        .collect()
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `staging-refresh --config <config> <args>`.
pub fn command(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("--config").arg(config).args(args);
    cmd
}

/// Runs `staging-refresh --config <config> <args>` to completion (off the async runtime).
pub async fn run(config: &Path, args: &[&str]) -> Run {
    run_command(command(config, args)).await
}

pub async fn run_command(cmd: Command) -> Run {
    finish(spawn(cmd)).await
}

/// Starts `cmd` with stdin closed, output captured and the test's RUST_LOG not inherited, for
/// a command that must be acted on while it runs; [`finish`] collects it.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("run staging-refresh")
}

/// Waits for a [`spawn`]ed command (off the async runtime) and returns what it printed.
pub async fn finish(child: Child) -> Run {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    Run::from(out)
}

/// Waits until `child` has stopped itself at its `pause` point.
pub async fn paused(child: &Child) {
    let stat = format!("/proc/{}/stat", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        // "pid (comm) S ...": the state follows the command name.
        if text
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('T'))
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never paused: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A directory of the test's own, removed at exit.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = services::root().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` as `config.toml` in a fresh directory and returns its path.
pub fn write_config(text: &str) -> PathBuf {
    let path = test_dir("config").join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// GET `path` over HTTP/1.1; returns the status line, the content type and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Every sample of a scrape: `name{labels}` → value.
pub async fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let (status, content_type, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

pub fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}
