//! GnuPG as db-backup runs it: `gpg --batch --passphrase-fd 0 -c` for a passphrase, `gpg
//! --encrypt --recipient-file` for a public key. Each helper works in a home of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::fixtures::pipe;
use super::test_dir;

/// The public and secret halves of a key generated for a test.
pub struct Key {
    /// Binary, as `gpg --export` writes it: what `--recipient-file` reads.
    pub public: PathBuf,
    /// ASCII-armored, as `gpg --armor --export-secret-keys` writes it.
    pub secret: PathBuf,
}

/// The key types db-backup users encrypt to.
#[derive(Debug, Clone, Copy)]
pub enum Algorithm {
    Rsa,
    Curve25519,
}

fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.env("GNUPGHOME", home)
        .args(["--batch", "--quiet", "--no-tty"])
        .stderr(Stdio::inherit());
    cmd
}

/// Runs `f` in a new GnuPG home, then stops the agent gpg started there.
fn in_home<T>(f: impl FnOnce(&Path) -> T) -> T {
    let home = test_dir("gnupg");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let result = f(&home);
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "all"])
        .status();
    result
}

/// A new key without a passphrase, exported to files in its own directory.
pub fn generate(algorithm: Algorithm) -> Key {
    in_home(|home| generate_in(home, algorithm))
}

fn generate_in(home: &Path, algorithm: Algorithm) -> Key {
    let (primary, subkey) = match algorithm {
        Algorithm::Rsa => (
            "Key-Type: RSA\nKey-Length: 2048",
            "Subkey-Type: RSA\nSubkey-Length: 2048",
        ),
        Algorithm::Curve25519 => (
            "Key-Type: EDDSA\nKey-Curve: ed25519",
            "Subkey-Type: ECDH\nSubkey-Curve: cv25519",
        ),
    };
    let parameters = format!(
        "%no-protection\n{primary}\n{subkey}\nName-Real: Production backups\n\
         Name-Email: backups@example.com\nExpire-Date: 0\n%commit\n"
    );
    pipe(gpg(home).arg("--gen-key"), parameters.as_bytes());
    let public = home.join("backups.gpg");
    let secret = home.join("backups-secret.asc");
    std::fs::write(&public, pipe(gpg(home).arg("--export"), b"")).unwrap();
    let exported = pipe(gpg(home).args(["--armor", "--export-secret-keys"]), b"");
    std::fs::write(&secret, exported).unwrap();
    Key { public, secret }
}

/// `data` encrypted with `passphrase` (`gpg -c` defaults: AES-256, iterated and salted S2K).
pub fn encrypt_with_passphrase(data: &[u8], passphrase: &str) -> Vec<u8> {
    in_home(|home| {
        let plain = home.join("dump");
        std::fs::write(&plain, data).unwrap();
        pipe(
            gpg(home).args(["--passphrase-fd", "0", "-c"]).arg(&plain),
            format!("{passphrase}\n").as_bytes(),
        );
        std::fs::read(home.join("dump.gpg")).unwrap()
    })
}

/// `data` encrypted to `key`'s public half.
pub fn encrypt_to(data: &[u8], key: &Key) -> Vec<u8> {
    in_home(|home| {
        pipe(
            gpg(home)
                .args(["--encrypt", "--recipient-file"])
                .arg(&key.public),
            data,
        )
    })
}
