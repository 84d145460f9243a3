//! Every snapshot db-backup writes, made the way it makes them (`pg_dump | zstd/gzip/bzip2/xz`,
//! `gpg -c` or `gpg --encrypt --recipient-file`, `md5sum`/`sha1sum` in the directory),
//! restored and anonymized against real PostgreSQL and S3; and each way such a file can be
//! broken failing cleanly, naming the cause.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::env::Env;
use common::fixtures::pipe;
use common::gpg::{self, Algorithm, Key};
use common::services::Postgres;
use common::staging::{PROD_USERS, prod_dump};
use common::{prod_postgres, s3, test_dir};

const PASSPHRASE: &str = "backup passphrase 7f3a";

fn rsa_key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| gpg::generate(Algorithm::Rsa))
}

fn curve25519_key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| gpg::generate(Algorithm::Curve25519))
}

/// `data` compressed as db-backup's COMPRESSION setting does it, for the extension after
/// `.sql` (`""`: none).
fn compress(extension: &str, data: &[u8]) -> Vec<u8> {
    let tool: &[&str] = match extension {
        "zst" => &["zstd", "-q", "-c", "-3"],
        "gz" => &["gzip", "-c"],
        "bz2" => &["bzip2", "-c"],
        "xz" => &["xz", "-c"],
        "" => return data.to_vec(),
        other => panic!("no compressor for {other}"),
    };
    pipe(Command::new(tool[0]).args(&tool[1..]), data)
}

/// How a test's snapshot is encrypted, and the `[snapshot.decrypt]` that opens it.
enum Encryption {
    None,
    Passphrase,
    /// The passphrase read from a file, as from a systemd credential.
    PassphraseFile,
    To(&'static Key),
}

impl Encryption {
    fn apply(&self, data: Vec<u8>) -> Vec<u8> {
        match self {
            Encryption::None => data,
            Encryption::Passphrase | Encryption::PassphraseFile => {
                gpg::encrypt_with_passphrase(&data, PASSPHRASE)
            }
            Encryption::To(key) => gpg::encrypt_to(&data, key),
        }
    }

    fn config(&self) -> String {
        match self {
            Encryption::None => String::new(),
            Encryption::Passphrase => {
                format!("\n[snapshot.decrypt]\npassphrase = \"{PASSPHRASE}\"\n")
            }
            Encryption::PassphraseFile => {
                let file = test_dir("credentials").join("passphrase");
                std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
                format!(
                    "\n[snapshot.decrypt]\npassphrase_file = {:?}\n",
                    file.display().to_string()
                )
            }
            Encryption::To(key) => decrypt_with_key(key),
        }
    }
}

fn decrypt_with_key(key: &Key) -> String {
    format!(
        "\n[snapshot.decrypt]\nkey_file = {:?}\n",
        key.secret.display().to_string()
    )
}

/// The sidecar db-backup's CHECKSUM setting writes: `md5sum`/`sha1sum <file>` run in the
/// file's directory.
fn checksum_line(tool: &str, name: &str, body: &[u8]) -> String {
    let dir = test_dir("artifact");
    std::fs::write(dir.join(name), body).unwrap();
    let out = Command::new(tool)
        .arg(name)
        .current_dir(&dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {name}");
    String::from_utf8(out.stdout).unwrap()
}

/// A staging environment whose bucket holds `body` as `pgsql_app_prod-db_<time><suffix>` with
/// a `<tool>` sidecar (`md5sum` or `sha1sum`) of those bytes.
async fn env_with(suffix: &str, body: Vec<u8>, tool: &str) -> Env {
    let mut env = Env::empty().await;
    env.snapshot = env.snapshot.replace(".sql.zst", suffix);
    let extension = if tool == "md5sum" { "md5" } else { "sha1" };
    let sidecar = checksum_line(tool, &env.snapshot, &body);
    let snapshot = env.snapshot.clone();
    s3().put(&env.bucket, &format!("{snapshot}.{extension}"), sidecar)
        .await;
    s3().put(&env.bucket, &snapshot, body).await;
    env
}

/// Makes the production dump into `pgsql_...sql[.<extension>][.gpg]`, uploads it with a
/// `tool` sidecar, refreshes, and checks staging now holds production's data, anonymized.
async fn restores(extension: &str, encryption: Encryption, tool: &str) {
    let body = encryption.apply(compress(extension, prod_dump()));
    let mut suffix = String::from(".sql");
    if !extension.is_empty() {
        suffix.push_str(&format!(".{extension}"));
    }
    if !matches!(encryption, Encryption::None) {
        suffix.push_str(".gpg");
    }
    let mut env = env_with(&suffix, body, tool).await;
    env.sections.push_str(&encryption.config());

    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{suffix}: {out:?}");
    let report = out.json();
    assert_eq!(report["snapshot"]["name"], env.snapshot);
    assert_eq!(report["snapshot"]["checksum_verified"], true);
    let users = prod_postgres().query("app", "SELECT count(*) FROM \"user\"");
    assert_eq!(users, PROD_USERS.to_string());
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\""),
        users,
        "{suffix}"
    );
    // Everyone but the admin is anonymized.
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\" WHERE email LIKE 'anon\\_%@staging.invalid'"),
        (PROD_USERS - 1).to_string(),
        "{suffix}"
    );
    assert_eq!(
        env.query("SELECT count(*) FROM external_system_integration WHERE push_products"),
        "0"
    );
}

#[tokio::test]
async fn zstd_with_an_md5_sidecar_restores() {
    restores("zst", Encryption::None, "md5sum").await;
}

#[tokio::test]
async fn gzip_with_a_sha1_sidecar_restores() {
    restores("gz", Encryption::None, "sha1sum").await;
}

#[tokio::test]
async fn bzip2_with_an_md5_sidecar_restores() {
    restores("bz2", Encryption::None, "md5sum").await;
}

#[tokio::test]
async fn xz_with_a_sha1_sidecar_restores() {
    restores("xz", Encryption::None, "sha1sum").await;
}

#[tokio::test]
async fn uncompressed_sql_with_a_sha1_sidecar_restores() {
    restores("", Encryption::None, "sha1sum").await;
}

#[tokio::test]
async fn zstd_encrypted_with_a_passphrase_restores() {
    restores("zst", Encryption::Passphrase, "sha1sum").await;
}

#[tokio::test]
async fn xz_encrypted_with_a_passphrase_from_a_file_restores() {
    restores("xz", Encryption::PassphraseFile, "md5sum").await;
}

#[tokio::test]
async fn uncompressed_sql_encrypted_with_a_passphrase_restores() {
    restores("", Encryption::Passphrase, "md5sum").await;
}

#[tokio::test]
async fn gzip_encrypted_to_an_rsa_key_restores() {
    restores("gz", Encryption::To(rsa_key()), "sha1sum").await;
}

#[tokio::test]
async fn bzip2_encrypted_to_a_curve25519_key_restores() {
    restores("bz2", Encryption::To(curve25519_key()), "md5sum").await;
}

// The failure matrix: each exits 1 naming the cause, staging unchanged, scratch DB gone.

async fn truncated(extension: &str, compression: &str) {
    let body = compress(extension, prod_dump());
    let body = body[..body.len() * 2 / 3].to_vec();
    let env = env_with(&format!(".sql.{extension}"), body, "md5sum").await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        &format!("decompressing {} ({compression})", env.snapshot),
    );
}

#[tokio::test]
async fn a_truncated_bzip2_dump_fails_cleanly() {
    truncated("bz2", "bzip2").await;
}

#[tokio::test]
async fn a_truncated_xz_dump_fails_cleanly() {
    truncated("xz", "xz").await;
}

#[tokio::test]
async fn a_wrong_passphrase_fails_cleanly() {
    let body = gpg::encrypt_with_passphrase(&compress("zst", prod_dump()), "another passphrase");
    let mut env = env_with(".sql.zst.gpg", body, "sha1sum").await;
    env.sections.push_str(&Encryption::Passphrase.config());
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, &format!("decrypting {}", env.snapshot));
    assert!(!out.stderr.contains(PASSPHRASE), "{out:?}");
}

#[tokio::test]
async fn a_wrong_key_fails_cleanly() {
    let body = gpg::encrypt_to(&compress("zst", prod_dump()), rsa_key());
    let mut env = env_with(".sql.zst.gpg", body, "sha1sum").await;
    env.sections.push_str(&decrypt_with_key(curve25519_key()));
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "does not open it");
}

#[tokio::test]
async fn a_flipped_byte_in_an_encrypted_dump_fails_cleanly() {
    let encrypted = gpg::encrypt_with_passphrase(&compress("zst", prod_dump()), PASSPHRASE);
    // Early, the garbage reaches zstd's frame header; later, zstd may or may not notice it
    // first: either way the encryption's integrity check names the cause.
    for eighth in [1, 4, 7] {
        let mut body = encrypted.clone();
        let at = body.len() * eighth / 8;
        body[at] ^= 0x01;
        // The sidecar is of the tampered bytes: only the encryption's integrity check can tell.
        let mut env = env_with(".sql.zst.gpg", body, "sha1sum").await;
        env.sections.push_str(&Encryption::Passphrase.config());
        let out = env.refresh().await;
        env.assert_failed_cleanly(&out, &format!("decrypting {}", env.snapshot));
    }
}

#[tokio::test]
async fn a_sha1_mismatch_fails_cleanly() {
    let mut env = Env::empty().await;
    env.snapshot = env.snapshot.replace(".sql.zst", ".sql.xz");
    let other = checksum_line("sha1sum", &env.snapshot, b"other bytes");
    let snapshot = env.snapshot.clone();
    s3().put(&env.bucket, &format!("{snapshot}.sha1"), other)
        .await;
    s3().put(&env.bucket, &snapshot, compress("xz", prod_dump()))
        .await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "checksum mismatch");
    assert!(out.stderr.contains("the .sha1 sidecar says"), "{out:?}");
}

#[tokio::test]
async fn a_sidecar_of_the_wrong_kind_is_named() {
    let env = Env::empty().await;
    let body = compress("zst", prod_dump());
    let md5_line = checksum_line("md5sum", &env.snapshot, &body);
    let snapshot = env.snapshot.clone();
    s3().put(&env.bucket, &format!("{snapshot}.sha1"), md5_line)
        .await;
    s3().put(&env.bucket, &snapshot, body).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        &format!("the checksum sidecar {snapshot}.sha1 is not \"<40 hex digits>"),
    );
}

#[tokio::test]
async fn a_compression_other_than_the_name_says_is_named() {
    let env = env_with(".sql.zst", compress("gz", prod_dump()), "md5sum").await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "is named .sql.zst but its first bytes are gzip's");
}

#[tokio::test]
async fn an_encrypted_dump_without_a_secret_is_named() {
    let body = gpg::encrypt_with_passphrase(&compress("zst", prod_dump()), PASSPHRASE);
    let env = env_with(".sql.zst.gpg", body, "md5sum").await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "[snapshot.decrypt] is not configured");
}

#[tokio::test]
async fn a_custom_format_dump_is_refused_saying_what_to_configure() {
    prod_dump();
    let custom = Command::new(Postgres::bin("pg_dump"))
        .args(["-Fc", "-d", &prod_postgres().url("app")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(custom.status.success());
    let env = env_with(".sql.zst", compress("zst", &custom.stdout), "md5sum").await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "is a custom-format dump (pg_dump -Fc)");
    assert!(
        out.stderr
            .contains("configure db-backup to write plain SQL"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_cluster_dump_is_listed_and_refused_saying_what_to_configure() {
    let mut env = Env::empty().await;
    env.snapshot = env.snapshot.replace("pgsql_app_", "pgsql_all_");
    let snapshot = env.snapshot.clone();
    s3().put(&env.bucket, &snapshot, compress("zst", b"-- pg_dumpall\n"))
        .await;
    let globals = snapshot.replace("pgsql_all_", "pgsql_globals_");
    s3().put(&env.bucket, &globals, compress("zst", b"-- roles\n"))
        .await;

    let listed = env.run(&["snapshots"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&snapshot) && l.contains("cluster dump (pg_dumpall)")),
        "{listed:?}"
    );
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&globals) && l.contains("globals dump")),
        "{listed:?}"
    );
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "is a cluster dump (pg_dumpall)");
    assert!(out.stderr.contains("DBnn_SPLIT_DB=TRUE"), "{out:?}");
}

#[tokio::test]
async fn snapshots_shows_compression_encryption_and_checksum_and_check_opens_the_newest() {
    let body = gpg::encrypt_with_passphrase(
        &compress(
            "xz",
            b"-- PostgreSQL database dump\n-- PostgreSQL database dump complete\n",
        ),
        PASSPHRASE,
    );
    let mut env = env_with(".sql.xz.gpg", body, "sha1sum").await;
    env.sections.push_str(&Encryption::Passphrase.config());

    let listed = env.run(&["snapshots"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let header = listed.stdout.lines().next().unwrap();
    let row = listed.stdout.lines().nth(1).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert!(
        header.contains("COMPRESSION") && header.contains("ENCRYPTION"),
        "{header}"
    );
    assert_eq!(columns[0], env.snapshot);
    assert_eq!(columns[columns.len() - 3..], ["xz", "gpg", "sha1"], "{row}");
    let json = env.run(&["--json", "snapshots"]).await.json();
    let listed = &json["snapshots"][0];
    assert_eq!(listed["compression"], "xz");
    assert_eq!(listed["encrypted"], true);
    assert_eq!(listed["checksum"]["kind"], "sha1");

    assert_eq!(env.run(&["init-target"]).await.code, 0);
    let check = env.run(&["check"]).await;
    assert_eq!(check.code, 0, "{check:?}");
    let line = check
        .stdout
        .lines()
        .find(|l| l.contains("snapshot decryption"))
        .unwrap();
    assert!(line.contains(&format!("opens {}", env.snapshot)), "{line}");

    env.sections = env.sections.replace(PASSPHRASE, "not the passphrase");
    let check = env.run(&["check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    let line = check
        .stdout
        .lines()
        .find(|l| l.contains("snapshot decryption"))
        .unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("decrypting"),
        "{line}"
    );
    assert!(!check.stdout.contains("not the passphrase"), "{check:?}");
}
