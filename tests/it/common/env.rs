//! The test world every integration test builds on: a staging database with data of its own,
//! a snapshot bucket for production dumps, and the config pointing at both, built from the
//! sections each test varies; then running the binary on it and checking what a run left.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::constants::{PROD_ADMIN_EMAIL, PROD_DB};
use super::fixtures::{PROD_ACCOUNTS, PROD_RULES, dump_name, md5_hex, upload_snapshot, zstd};
use super::staging::{
    OWNER, REFRESH_ROLE, RESTORE_PASSWORD, SENTINEL, create_restore_role, refresh_role_url,
    seed_staging,
};
use super::{Postgres, Run, postgres, s3, services, test_dir, unique};
use staging_refresh::config::Config;
use staging_refresh::lock::RunLock;

// Test files import the admin account from here too.
pub use super::constants::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// One test's staging database, snapshot bucket and config.
pub struct Env {
    /// The staging server, and the maintenance URL the refresh connects with.
    pub pg: &'static Postgres,
    pub url: String,
    pub db: String,
    pub bucket: String,
    pub dir: PathBuf,
    /// The snapshot [`Env::upload`] puts in the bucket: a dump of [`PROD_DB`], an hour old.
    pub snapshot: String,
    /// `snapshot.prefix`: where in the bucket the snapshots are.
    pub prefix: String,
    /// `snapshot.database`: the production database the snapshots are dumps of.
    pub snapshot_database: String,
    /// Lines added to the `[database]` section.
    pub database: String,
    /// `anonymize.prod_admin_email`: the fixture's admin unless a test says otherwise.
    pub prod_admin_email: Option<String>,
    /// Lines added to the `[anonymize]` section.
    pub anonymize: String,
    /// The masking rules for the snapshot's schema: the prod-shaped one's unless a test
    /// restores another application's.
    pub rules: String,
    /// The `[anonymize.accounts]` section: the prod-shaped schema's unless a test restores
    /// another application's.
    pub accounts: String,
    /// Lines added to the `[daemon]` section.
    pub daemon: String,
    /// The lines of a `[schedule]` section, left out while empty.
    pub schedule: String,
    /// `metrics.listen`: a free port of the test's own, for the daemon it may start.
    pub metrics: SocketAddr,
    /// `database.restore_password_file`, holding [`RESTORE_PASSWORD`]: set when the refresh
    /// role may not set the restore role's password for each run.
    pub restore_password_file: Option<PathBuf>,
    /// The `[backend]` section (stop and start commands that log to `backend.log`), then
    /// whole sections appended: a test adds `[backend]` keys first, then its sections.
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

    /// A staging database with data of its own and an empty snapshot bucket.
    pub async fn empty() -> Env {
        Env::on(postgres(), refresh_role_url(postgres())).await
    }

    /// Like [`Env::empty`], on the staging server `pg`, reached with `url`.
    pub async fn on(pg: &'static Postgres, url: String) -> Env {
        let db = unique("app");
        seed_staging(pg, &db);
        let user = tokio_postgres::Config::from_str(&url)
            .unwrap()
            .get_user()
            .map(str::to_owned);
        let user = user.expect("the URL names a user");
        if user != REFRESH_ROLE && user != "postgres" {
            create_restore_role(pg, &db, &user);
        }
        let dir = test_dir("refresh");
        let may_set_password = pg.query(
            "postgres",
            &format!("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = '{user}'"),
        ) == "t";
        let restore_password_file = (!may_set_password).then(|| {
            let path = dir.join("restore-password");
            std::fs::write(&path, format!("{RESTORE_PASSWORD}\n")).unwrap();
            path
        });
        Env {
            pg,
            url,
            db,
            bucket: s3().bucket("snaps").await,
            snapshot: dump_name(PROD_DB, "prod-db", Utc::now() - chrono::Duration::hours(1)),
            prefix: String::new(),
            snapshot_database: PROD_DB.into(),
            database: String::new(),
            prod_admin_email: Some(PROD_ADMIN_EMAIL.into()),
            anonymize: String::new(),
            rules: PROD_RULES.into(),
            accounts: PROD_ACCOUNTS.into(),
            daemon: String::new(),
            schedule: String::new(),
            metrics: SocketAddr::from(([127, 0, 0, 1], services::free_port())),
            restore_password_file,
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
        let key = format!("{}{}", self.prefix, self.snapshot);
        let sidecar = sidecar.unwrap_or_else(|| format!("{}  {}\n", md5_hex(&body), self.snapshot));
        s3().put(&self.bucket, &format!("{key}.md5"), sidecar).await;
        s3().put(&self.bucket, &key, body).await;
    }

    /// Uploads `body` as a dump of `snapshot.database` taken at `taken_at`, with its `.md5`
    /// sidecar when `sidecar`; returns the snapshot's name.
    pub async fn upload_taken(
        &self,
        body: Vec<u8>,
        taken_at: DateTime<Utc>,
        sidecar: bool,
    ) -> String {
        let name = dump_name(&self.snapshot_database, "prod-db", taken_at);
        upload_snapshot(s3(), &self.bucket, &self.prefix, &name, body, sidecar).await;
        name
    }

    /// The config file's text.
    pub fn config_text(&self) -> String {
        let schedule = if self.schedule.is_empty() {
            String::new()
        } else {
            format!("[schedule]\n{}\n", self.schedule)
        };
        let restore_password = match &self.restore_password_file {
            Some(path) => format!("restore_password_file = {:?}\n", path.display().to_string()),
            None => String::new(),
        };
        let prod_admin = match &self.prod_admin_email {
            Some(email) => format!("prod_admin_email = \"{email}\"\n"),
            None => String::new(),
        };
        format!(
            r#"[snapshot]
{bucket}prefix = "{prefix}"
database = "{snapshot_database}"

[database]
url = "{url}"
name = "{db}"
owner = "{OWNER}"
{restore_password}{database}

[anonymize]
admin_email = "{ADMIN_EMAIL}"
admin_password = "{ADMIN_PASSWORD}"
{prod_admin}{anonymize}
{rules}
{accounts}
[daemon]
state_dir = "{state}"
control_socket = "{state}/control.sock"
{daemon}
[metrics]
listen = "{metrics}"

{schedule}{sections}"#,
            bucket = s3().bucket_toml(&self.bucket),
            prefix = self.prefix,
            snapshot_database = self.snapshot_database,
            url = self.url,
            db = self.db,
            restore_password = restore_password,
            database = self.database,
            anonymize = self.anonymize,
            rules = self.rules,
            accounts = self.accounts,
            state = self.state_dir().display(),
            daemon = self.daemon,
            metrics = self.metrics,
            sections = self.sections,
        )
    }

    /// Writes the config file (`config.toml` in the test's directory) and returns its path.
    pub fn config(&self) -> PathBuf {
        let path = self.dir.join("config.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        path
    }

    /// The config as the binary loads it.
    pub fn loaded(&self) -> Config {
        Config::load(&self.config()).unwrap()
    }

    /// `daemon.state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `staging-refresh --config <config> <args>`, for a test that starts it itself.
    pub fn command(&self, args: &[&str]) -> Command {
        super::command(&self.config(), args)
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        super::run(&self.config(), args).await
    }

    /// `init-target`, which must succeed.
    pub async fn init_target(&self) -> Run {
        let init = self.run(&["init-target"]).await;
        assert_eq!(init.code, 0, "{init:?}");
        init
    }

    /// `init-target`, then `run --skip-media --json`.
    pub async fn refresh(&self) -> Run {
        self.init_target().await;
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
        RunLock::acquire(&self.state_dir().join("refresh.lock"), "check").unwrap();
        assert!(!self.state_dir().join("maintenance.json").exists());
        assert_eq!(self.backend_log(), "", "the backend was touched");
    }

    /// SIGTERMs the `run` in `child`: it stops within 20 s and fails cleanly, cancelled.
    pub async fn assert_cancels_cleanly(&self, child: std::process::Child) {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = std::time::Instant::now();
        let out = super::finish(child).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "cancelling took {:?}",
            started.elapsed()
        );
        self.assert_failed_cleanly(&out, "cancelled by a signal before cutover");
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
