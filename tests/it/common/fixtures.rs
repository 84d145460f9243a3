//! Production-shaped data: a database built from `tests/fixtures/prod-shaped.sql`, dumped the
//! way db-backup does (`pg_dump | zstd`) and uploaded with its `.md5` sidecar.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use md5::{Digest, Md5};

use super::services::{Postgres, S3};

/// The prod-shaped schema's accounts table (`[anonymize.accounts]`, the runbook's names), as
/// `etc/config.toml` ships it.
pub const PROD_ACCOUNTS: &str = r#"
[anonymize.accounts]
table = "public.user"
id = "id"
email = "email"
password = "hashed_password"
name = "full_name"
superuser = "is_superuser"
active = "is_active"
"#;

/// Masking rules for the prod-shaped schema's text columns the accounts section leaves: the
/// runbook's integrations neutralised, the rest classified as not personal; appended to the
/// `[anonymize]` section; `etc/config.toml` ships them.
pub const PROD_RULES: &str = r#"
[[anonymize.column]]
table = "public.external_system_integration"
column = "push_products"
mask = "redact"
value = "f"

[[anonymize.column]]
table = "public.external_system_integration"
column = "push_service_base_url"
mask = "null"

[[anonymize.column]]
table = "public.external_system_integration"
column = "push_service_api_key"
mask = "null"

[[anonymize.table]]
table = "public.organization"
mode = "keep"

[[anonymize.table]]
table = "public.product"
mode = "keep"

[[anonymize.table]]
table = "public.generation"
mode = "keep"

[[anonymize.column]]
table = "public.user"
column = "settings"
mask = "keep"

[[anonymize.column]]
table = "public.external_system_integration"
column = "name"
mask = "keep"
"#;

use super::constants::PROD_OWNER;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Creates database `db` on `pg`, owned by [`PROD_OWNER`], filled with `users` users' worth of
/// production-shaped data (about 22 rows per user).
pub fn seed_prod(pg: &Postgres, db: &str, users: u64) {
    seed_prod_with(pg, db, users, &[]);
}

/// Like [`seed_prod`], then runs the fixture files `more` the same way.
pub fn seed_prod_with(pg: &Postgres, db: &str, users: u64, more: &[&str]) {
    for role in [PROD_OWNER, "app_readonly"] {
        // Roles are cluster-wide; a second seed on the same server finds them there.
        let _ = pg.psql("postgres", &format!("CREATE ROLE {role}"));
    }
    pg.query(
        "postgres",
        &format!("CREATE DATABASE \"{db}\" OWNER {PROD_OWNER}"),
    );
    let users = format!("users={users}");
    let files: Vec<PathBuf> = ["prod-shaped.sql"]
        .iter()
        .chain(more)
        .map(|f| fixture_path(f))
        .collect();
    let mut args = vec!["-v", &users];
    for file in &files {
        args.extend(["-f", file.to_str().unwrap()]);
    }
    psql_as_owner(pg, db, &args);
}

/// Creates database `db` on `pg` and runs the fixture file `file` in it as the superuser,
/// as another application's production would have made it (extensions, publications).
pub fn seed_as_superuser(pg: &Postgres, db: &str, file: &str) {
    pg.create_db(db);
    let out = Command::new(Postgres::bin("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &pg.url(db), "-f"])
        .arg(fixture_path(file))
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql -f {file} on {db} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// psql on `db` as [`PROD_OWNER`] with `args` (`-f FILE`, `-c SQL`, in order); it must succeed.
pub fn psql_as_owner(pg: &Postgres, db: &str, args: &[&str]) {
    let out = Command::new(Postgres::bin("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &pg.url(db)])
        .args(["-c", &format!("SET ROLE {PROD_OWNER}")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql on {db} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pg_dump` of `db` as plain SQL, as db-backup takes it.
pub fn dump_sql(pg: &Postgres, db: &str) -> Vec<u8> {
    pg_dump(pg, db, &[])
}

/// `pg_dump <args>` of `db`, plain SQL; it must succeed.
pub fn pg_dump(pg: &Postgres, db: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(Postgres::bin("pg_dump"))
        .args(["-d", &pg.url(db)])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `pg_dump` of `db` piped into zstd, written to `path`: streamed, for databases larger than
/// memory (the sandbox's at benchmark sizes).
// Only examples/sandbox.rs, which includes this harness, calls it: the tests' dumps are small.
#[allow(dead_code)]
pub fn dump_zstd_to(pg: &Postgres, db: &str, path: &Path) {
    let mut dump = Command::new(Postgres::bin("pg_dump"))
        .args(["-d", &pg.url(db)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run pg_dump");
    let zstd = Command::new("zstd")
        .args(["-q", "-3", "-f", "-o"])
        .arg(path)
        .stdin(dump.stdout.take().unwrap())
        .status()
        .expect("run zstd");
    let dumped = dump.wait().unwrap();
    assert!(
        dumped.success() && zstd.success(),
        "pg_dump {db} | zstd failed"
    );
}

/// Compresses with the zstd command line tool, as db-backup does.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    pipe(Command::new("zstd").args(["-q", "-c", "-3"]), data)
}

/// What `cmd` prints for `data` on its standard input; it must succeed.
pub fn pipe(cmd: &mut Command, data: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// A db-backup file name: `pgsql_<db>_<host>_<YYYYMMDD-HHMMSS>.sql.zst`.
pub fn dump_name(db: &str, host: &str, taken_at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "pgsql_{db}_{host}_{}.sql.zst",
        taken_at.format("%Y%m%d-%H%M%S")
    )
}

/// Uploads a dump under `prefix` with its `.md5` sidecar (when `sidecar`), like db-backup.
pub async fn upload_snapshot(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    name: &str,
    body: Vec<u8>,
    sidecar: bool,
) {
    let key = format!("{prefix}{name}");
    if sidecar {
        let line = format!("{}  {name}\n", md5_hex(&body));
        s3.put(bucket, &format!("{key}.md5"), line).await;
    }
    s3.put(bucket, &key, body).await;
}
