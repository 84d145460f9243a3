//! One refresh test's world: a staging database with data of its own, a snapshot bucket
//! holding a production dump, the config pointing at both, and what the tests check after a
//! run (the refresh and fault-injection suites share it).

use std::path::PathBuf;

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fixtures::{PROD_RULES, dump_name, md5_hex, zstd};
use super::staging::{OWNER, SENTINEL, refresh_role_url, seed_staging};
use super::{Postgres, Run, postgres, s3, test_dir, unique};
use staging_refresh::lock::RunLock;

pub const ADMIN_EMAIL: &str = "admin@staging.example.com";
pub const ADMIN_PASSWORD: &str = "staging-admin-password";

/// One test's staging database, snapshot bucket and config.
pub struct Env {
    /// The staging server, and the maintenance URL the refresh connects with.
    pub pg: &'static Postgres,
    pub url: String,
    pub db: String,
    pub bucket: String,
    pub dir: PathBuf,
    pub snapshot: String,
    /// Lines added to the `[anonymize]` section.
    pub anonymize: String,
    /// Lines added to the `[daemon]` section.
    pub daemon: String,
    /// Whole sections appended to the config.
    pub sections: String,
}

impl Env {
    /// A staging database with data of its own and a bucket holding `dump` (plain SQL,
    /// compressed here) with a correct `.md5` sidecar.
    pub async fn new(dump: &[u8]) -> Env {
        let env = Env::empty().await;
        env.upload(zstd(dump), None).await;
        env
    }

    pub async fn empty() -> Env {
        Env::on(postgres(), refresh_role_url(postgres())).await
    }

    /// Like [`Env::empty`], on the staging server `pg`, reached with `url`.
    pub async fn on(pg: &'static Postgres, url: String) -> Env {
        let db = unique("app");
        seed_staging(pg, &db);
        let dir = test_dir("refresh");
        Env {
            pg,
            url,
            db,
            daemon: String::new(),
            bucket: s3().bucket("snaps").await,
            snapshot: dump_name("app", "prod-db", Utc::now() - chrono::Duration::hours(1)),
            anonymize: String::new(),
            sections: format!(
                "[backend]\nstop = [\"sh\", \"-c\", \"echo stop >> {log}\"]\n\
                 start = [\"sh\", \"-c\", \"echo start >> {log}\"]\n",
                log = dir.join("backend.log").display()
            ),
            dir,
        }
    }

    /// Uploads the snapshot; `sidecar` overrides the `.md5` file's text.
    pub async fn upload(&self, body: Vec<u8>, sidecar: Option<String>) {
        let sidecar = sidecar.unwrap_or_else(|| format!("{}  {}\n", md5_hex(&body), self.snapshot));
        s3().put(&self.bucket, &format!("{}.md5", self.snapshot), sidecar)
            .await;
        s3().put(&self.bucket, &self.snapshot, body).await;
    }

    pub fn config(&self) -> PathBuf {
        let text = format!(
            r#"[snapshot]
{bucket}prefix = ""
database = "app"

[database]
url = "{url}"
name = "{db}"
owner = "{OWNER}"

[anonymize]
admin_email = "{ADMIN_EMAIL}"
admin_password = "{ADMIN_PASSWORD}"
{anonymize}
{PROD_RULES}
[daemon]
state_dir = "{state}"
control_socket = "{state}/control.sock"
{daemon}
{sections}"#,
            bucket = s3().bucket_toml(&self.bucket),
            url = self.url,
            daemon = self.daemon,
            db = self.db,
            anonymize = self.anonymize,
            state = self.dir.join("state").display(),
            sections = self.sections,
        );
        let path = self.dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        super::run(&self.config(), args).await
    }

    /// `init-target`, then `run --skip-media --json`.
    pub async fn refresh(&self) -> Run {
        let init = self.run(&["init-target"]).await;
        assert_eq!(init.code, 0, "{init:?}");
        self.run(&["--json", "run", "--skip-media"]).await
    }

    pub fn query(&self, sql: &str) -> String {
        self.pg.query(&self.db, sql)
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.pg.query(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        ) == "1"
    }

    pub fn backend_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("backend.log")).unwrap_or_default()
    }

    /// A failed run: exit 1 naming `cause`, staging unchanged and queryable, scratch database
    /// gone, lock released, no maintenance flag, backend never stopped.
    pub fn assert_failed_cleanly(&self, out: &Run, cause: &str) {
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(cause), "expected {cause:?} in {out:?}");
        assert_eq!(self.query("SELECT note FROM sentinel"), SENTINEL);
        assert!(!self.database_exists(&format!("{}__refresh", self.db)));
        RunLock::acquire(&self.dir.join("state/refresh.lock"), "check").unwrap();
        assert!(!self.dir.join("state/maintenance.json").exists());
        assert_eq!(self.backend_log(), "", "the backend was touched");
    }
}

/// `sql` with `text` inserted after the first line equal to `after`.
pub fn inject(sql: &[u8], after: &str, text: &str) -> Vec<u8> {
    let sql = std::str::from_utf8(sql).unwrap();
    let marker = format!("\n{after}\n");
    let at = sql
        .find(&marker)
        .unwrap_or_else(|| panic!("no line {after:?} in the dump"))
        + marker.len();
    format!("{}{text}\n{}", &sql[..at], &sql[at..]).into_bytes()
}

/// An HTTP server answering 200 to everything; returns its URL.
pub async fn health_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/health")
}

/// Every key of `bucket` with its body, in key order.
pub async fn bucket_contents(bucket: &str) -> Vec<(String, Vec<u8>)> {
    let client = s3().client();
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut contents = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = client
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .to_vec();
        contents.push((key, body));
    }
    contents
}

/// A production media bucket with 30 objects and a staging one holding a stale key and an
/// outdated copy of a production key; their config sections are added to `env`.
pub async fn with_media(env: &mut Env, source_endpoint: Option<String>) -> (String, String) {
    let (prod, staging) = (s3().bucket("media").await, s3().bucket("media-stg").await);
    for i in 0..30 {
        s3().put(
            &prod,
            &format!("media/{i:02}/file.png"),
            format!("image {i}"),
        )
        .await;
    }
    s3().put(&staging, "media/00/file.png", "outdated").await;
    s3().put(&staging, "media/stale/orphan.png", "staging only")
        .await;
    let mut source = s3().bucket_toml(&prod);
    if let Some(endpoint) = source_endpoint {
        source = source.replace(&s3().endpoint(), &endpoint);
    }
    env.sections.push_str(&format!(
        "\n[media]\nenabled = true\nmax_delete = \"50%\"\n\n[media.source]\n{source}\n[media.target]\n{}",
        s3().bucket_toml(&staging)
    ));
    (prod, staging)
}
