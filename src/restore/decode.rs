//! Turns a snapshot's downloaded bytes into SQL bytes: the checksum of the downloaded bytes
//! (`.md5` or `.sha1` sidecar), OpenPGP decryption (`.gpg`), then decompression (zstd, gzip,
//! bzip2, xz or none). Each layer is confirmed by its first bytes, streams with bounded
//! memory, and names itself in its errors.

use crate::config::ExposeSecret;
use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::rc::Rc;

use md5::digest::DynDigest;
use pgp::composed::{DecryptionOptions, Deserializable, Message, SignedSecretKey, TheRing};
use pgp::types::{Password, Seipdv1ReadMode};

use crate::config::DecryptConfig;
use crate::snapshot::{ChecksumKind, Compression, Snapshot};

#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "the checksum sidecar {key} is not \"<{} hex digits>  {name}\" as {kind}sum writes it",
        .kind.hex_len()
    )]
    BadSidecar {
        key: String,
        kind: ChecksumKind,
        name: String,
    },
    #[error(
        "checksum mismatch for {name}: the .{kind} sidecar says {expected}, the downloaded bytes \
         hash to {actual}; the snapshot is corrupt or incomplete"
    )]
    Checksum {
        name: String,
        kind: ChecksumKind,
        expected: String,
        actual: String,
    },
    #[error("{name} is named {named} but its first bytes are {found}")]
    Mismatch {
        name: String,
        named: &'static str,
        found: &'static str,
    },
    #[error(
        "{name} is encrypted (.gpg) and [snapshot.decrypt] is not configured: set its \
         passphrase (or passphrase_file) or key_file"
    )]
    NoSecret { name: String },
    #[error("snapshot.decrypt.key_file {path}: {message}")]
    Key { path: String, message: String },
    #[error("decrypting {name}: {message}")]
    Decrypt { name: String, message: String },
    #[error(
        "decrypting {name}: {message}: the file was changed or damaged after it was encrypted, \
         or snapshot.decrypt.passphrase is not the one it was encrypted with"
    )]
    Tampered { name: String, message: String },
    #[error("decompressing {name} ({compression}): {message}")]
    Decompress {
        name: String,
        compression: Compression,
        message: String,
    },
    #[error(
        "{name} is a custom-format dump (pg_dump -Fc), not plain SQL: configure db-backup to \
         write plain SQL (no -Fc or --format=custom in its extra pg_dump options)"
    )]
    CustomFormat { name: String },
    #[error("reading {name}: {message}")]
    Read { name: String, message: String },
}

impl DecodeError {
    /// The error an I/O error stands for: a layer's own, or a read of the input itself.
    pub fn from_io(e: io::Error, name: &str) -> DecodeError {
        if e.get_ref().is_some_and(|inner| inner.is::<DecodeError>()) {
            *e.into_inner()
                .expect("checked above")
                .downcast::<DecodeError>()
                .expect("checked above")
        } else {
            DecodeError::Read {
                name: name.to_owned(),
                message: e.to_string(),
            }
        }
    }
}

/// Hashes the downloaded bytes and compares them with a sidecar's digest at the end.
pub struct Checksum {
    kind: ChecksumKind,
    expected: Vec<u8>,
    hasher: Box<dyn DynDigest + Send>,
}

impl Checksum {
    /// Parses a sidecar (`<hex>  <file name>` as md5sum/sha1sum print it, or just the hex) at
    /// `key` for the dump `name`.
    pub fn from_sidecar(
        kind: ChecksumKind,
        key: &str,
        name: &str,
        text: &[u8],
    ) -> Result<Checksum, DecodeError> {
        let bad = || DecodeError::BadSidecar {
            key: key.to_owned(),
            kind,
            name: name.to_owned(),
        };
        let text = std::str::from_utf8(text).map_err(|_| bad())?;
        let mut fields = text.split_whitespace();
        let digest = fields.next().ok_or_else(bad)?;
        // `*name` is sha1sum's binary mode; a path names the same file.
        let named = fields.next().map(|n| n.trim_start_matches('*'));
        if digest.len() != kind.hex_len()
            || named.is_some_and(|n| n.rsplit('/').next() != Some(name))
            || fields.next().is_some()
        {
            return Err(bad());
        }
        let expected = hex::decode(digest).map_err(|_| bad())?;
        let hasher: Box<dyn DynDigest + Send> = match kind {
            ChecksumKind::Md5 => Box::new(md5::Md5::default()),
            ChecksumKind::Sha1 => Box::new(sha1::Sha1::default()),
        };
        Ok(Checksum {
            kind,
            expected,
            hasher,
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    pub fn verify(self, name: &str) -> Result<(), DecodeError> {
        let actual = self.hasher.finalize();
        if *actual == *self.expected {
            return Ok(());
        }
        Err(DecodeError::Checksum {
            name: name.to_owned(),
            kind: self.kind,
            expected: hex::encode(&self.expected),
            actual: hex::encode(actual),
        })
    }
}

/// What opens `.gpg` snapshots: `[snapshot.decrypt]`, with its key read and parsed.
pub struct Secrets {
    passphrase: Option<Password>,
    key: Option<SignedSecretKey>,
}

impl Secrets {
    pub fn load(cfg: &DecryptConfig) -> Result<Secrets, DecodeError> {
        let key = match &cfg.key_file {
            Some(path) => {
                let failed = |message: String| DecodeError::Key {
                    path: path.display().to_string(),
                    message,
                };
                let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
                let key = if bytes.starts_with(b"-----BEGIN") {
                    SignedSecretKey::from_armor_single(&bytes[..]).map(|(key, _)| key)
                } else {
                    SignedSecretKey::from_bytes(&bytes[..])
                };
                Some(key.map_err(|e| failed(format!("not an OpenPGP secret key: {e}")))?)
            }
            None => None,
        };
        Ok(Secrets {
            passphrase: cfg
                .passphrase
                .as_ref()
                .map(|p| Password::from(p.expose_secret())),
            key,
        })
    }

    /// Decrypts `input` as it is read: the passphrase opens a `gpg -c` file, the key (unlocked
    /// by the passphrase when there is one) a file encrypted to it.
    fn open<R: BufRead + fmt::Debug + Send + 'static>(
        &self,
        input: R,
        armored: bool,
        name: &str,
    ) -> Result<Message<'static>, DecodeError> {
        let failed = |e: pgp::errors::Error| DecodeError::Decrypt {
            name: name.to_owned(),
            message: e.to_string(),
        };
        let message = if armored {
            Message::from_armor(input).map(|(message, _)| message)
        } else {
            Message::from_bytes(input)
        }
        .map_err(failed)?;
        let no_passphrase = Password::empty();
        let ring = TheRing {
            secret_keys: self.key.iter().collect(),
            key_passwords: vec![self.passphrase.as_ref().unwrap_or(&no_passphrase)],
            message_password: self.passphrase.iter().collect(),
            // Streaming: the integrity check (MDC) comes at the end, when a tampered file fails
            // the run before anything is committed; the default reads the whole file first.
            // GnuPG 2.3+ writes its own AEAD packets by default.
            decrypt_options: DecryptionOptions::new()
                .set_seipdv1_read_mode(Seipdv1ReadMode::Streaming)
                .enable_gnupg_aead(),
            ..Default::default()
        };
        let (message, _) = message.decrypt_the_ring(ring, true).map_err(|e| {
            let message = format!("snapshot.decrypt's passphrase or key does not open it ({e})");
            DecodeError::Decrypt {
                name: name.to_owned(),
                message,
            }
        })?;
        if message.is_compressed() {
            message.decompress().map_err(failed)
        } else {
            Ok(message)
        }
    }
}

/// An opened snapshot: its SQL bytes and, for an encrypted one, its decryption.
pub struct Opened {
    pub sql: Box<dyn Read>,
    pub decrypted: Option<Decrypted>,
}

/// An encrypted snapshot's decrypted bytes, shared by the layer reading them and the check of
/// the encryption's integrity: garbage from a damaged file or a wrong passphrase can fail a
/// later step first (a decompressor, the first bytes' check, the SQL lexer), and the
/// decryption read to its end says whether that is what happened.
#[derive(Clone)]
pub struct Decrypted(Rc<RefCell<Decryption>>);

struct Decryption {
    reader: Box<dyn Read>,
    name: String,
    /// Its error, once it failed: OpenPGP's readers must not be read again after one.
    failed: Option<DecodeError>,
}

impl Read for Decrypted {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut d = self.0.borrow_mut();
        if let Some(e) = &d.failed {
            return Err(io::Error::other(e.clone()));
        }
        d.reader.read(out).map_err(|e| {
            let e = DecodeError::from_io(e, &d.name);
            d.failed = Some(e.clone());
            io::Error::other(e)
        })
    }
}

impl Decrypted {
    /// The decryption's own failure, found by reading what is left of it; `None` when it
    /// reads to its end, so the later step's error is the cause.
    pub fn failure(&self) -> Option<DecodeError> {
        let mut reader = self.clone();
        let _ = io::copy(&mut reader, &mut io::sink());
        match self.0.borrow().failed.clone() {
            Some(e @ (DecodeError::Tampered { .. } | DecodeError::Decrypt { .. })) => Some(e),
            _ => None,
        }
    }

    /// `e`, unless the decryption failed: then its failure.
    fn or_its_failure(this: &Option<Decrypted>, e: DecodeError) -> DecodeError {
        this.as_ref().and_then(Decrypted::failure).unwrap_or(e)
    }
}

/// The SQL bytes of `snapshot`, read from its downloaded bytes `raw`.
pub fn sql<R: Read + fmt::Debug + Send + 'static>(
    raw: R,
    snapshot: &Snapshot,
    secrets: Option<&Secrets>,
) -> Result<Opened, DecodeError> {
    let name = snapshot.name.as_str();
    let io = |e| DecodeError::from_io(e, name);
    let (plain, decrypted): (Box<dyn Read>, _) = if snapshot.encrypted {
        let (head, raw) = peek(raw).map_err(io)?;
        let armored = head.starts_with(b"-----BEGIN PGP MESSAGE-----");
        let found = Magic::of(&head);
        if !armored && found != Magic::OpenPgp {
            return Err(DecodeError::Mismatch {
                name: name.to_owned(),
                named: ".gpg",
                found: found.describe(),
            });
        }
        let secrets = secrets.ok_or_else(|| DecodeError::NoSecret {
            name: name.to_owned(),
        })?;
        let message = secrets.open(BufReader::new(raw), armored, name)?;
        let decrypted = Decrypted(Rc::new(RefCell::new(Decryption {
            reader: Box::new(Layer {
                inner: message,
                name: name.to_owned(),
                stage: Stage::Decrypt,
            }),
            name: name.to_owned(),
            failed: None,
        })));
        (Box::new(decrypted.clone()), Some(decrypted))
    } else {
        (Box::new(raw), None)
    };
    // Past the decryption, a failure may be the decryption's: it is asked first.
    let judged = |e: DecodeError| Decrypted::or_its_failure(&decrypted, e);
    let (head, plain) = peek(plain).map_err(|e| judged(io(e)))?;
    let compression = snapshot.compression;
    let expected = match compression {
        Compression::None => Magic::Sql,
        c => Magic::Compressed(c),
    };
    match Magic::of(&head) {
        Magic::CustomFormat => {
            return Err(judged(DecodeError::CustomFormat {
                name: name.to_owned(),
            }));
        }
        found if found != expected => {
            return Err(judged(DecodeError::Mismatch {
                name: name.to_owned(),
                named: compression.suffix(),
                found: found.describe(),
            }));
        }
        _ => {}
    }
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => {
            return Ok(Opened {
                sql: Box::new(plain),
                decrypted,
            });
        }
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(plain).map_err(|e| judged(io(e)))?)
        }
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(plain)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(plain)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(plain)),
    };
    let (head, sql) = peek(Layer {
        inner: decompressed,
        name: name.to_owned(),
        stage: Stage::Decompress(compression),
    })
    .map_err(|e| judged(io(e)))?;
    if Magic::of(&head) == Magic::CustomFormat {
        return Err(judged(DecodeError::CustomFormat {
            name: name.to_owned(),
        }));
    }
    Ok(Opened {
        sql: Box::new(sql),
        decrypted,
    })
}

/// What a stream's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Magic {
    Compressed(Compression),
    OpenPgp,
    CustomFormat,
    /// Anything else: SQL text, as far as the first bytes tell.
    Sql,
}

/// The longest magic number below.
const MAGIC_LEN: usize = 6;

impl Magic {
    fn of(head: &[u8]) -> Magic {
        const NUMBERS: [(&[u8], Magic); 5] = [
            (b"\x28\xb5\x2f\xfd", Magic::Compressed(Compression::Zstd)),
            (b"\x1f\x8b", Magic::Compressed(Compression::Gzip)),
            (b"BZh", Magic::Compressed(Compression::Bzip2)),
            (b"\xfd7zXZ\x00", Magic::Compressed(Compression::Xz)),
            (b"PGDMP", Magic::CustomFormat),
        ];
        if let Some((_, magic)) = NUMBERS.iter().find(|(n, _)| head.starts_with(n)) {
            return *magic;
        }
        // A binary OpenPGP message starts with a session key packet: tag 1 (public-key) or
        // 3 (symmetric), in the old or the new packet format.
        match head.first() {
            Some(0x84..=0x87 | 0x8c..=0x8f | 0xc1 | 0xc3) => Magic::OpenPgp,
            _ => Magic::Sql,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Magic::Compressed(Compression::Zstd) => "zstd's",
            Magic::Compressed(Compression::Gzip) => "gzip's",
            Magic::Compressed(Compression::Bzip2) => "bzip2's",
            Magic::Compressed(Compression::Xz) => "xz's",
            Magic::Compressed(Compression::None) | Magic::Sql => "not a compressed format's",
            Magic::OpenPgp => "an OpenPGP message's",
            Magic::CustomFormat => "a custom-format dump's (PGDMP)",
        }
    }
}

/// A reader whose first bytes were looked at: they come first again.
type Peeked<R> = io::Chain<Cursor<Vec<u8>>, R>;

/// Reads the first [`MAGIC_LEN`] bytes (fewer at the end of the input) and gives them back
/// with a reader that still yields them.
fn peek<R: Read>(mut input: R) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = Vec::with_capacity(MAGIC_LEN);
    (&mut input).take(MAGIC_LEN as u64).read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(input)))
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Decrypt,
    Decompress(Compression),
}

/// Names the layer an I/O error began in; an error from a layer below passes as it is.
struct Layer<R> {
    inner: R,
    name: String,
    stage: Stage,
}

impl<R: Read> Read for Layer<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.inner.read(out).map_err(|e| {
            if e.get_ref().is_some_and(|inner| inner.is::<DecodeError>()) {
                return e;
            }
            let (name, message) = (self.name.clone(), e.to_string());
            io::Error::other(match self.stage {
                Stage::Decrypt => DecodeError::Tampered { name, message },
                Stage::Decompress(compression) => DecodeError::Decompress {
                    name,
                    compression,
                    message,
                },
            })
        })
    }
}
