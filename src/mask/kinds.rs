//! The mask kinds: how one production value becomes its staging value. Every kind but
//! `password` derives its output from the keyed hash of the value alone, so equal values
//! mask equally in every table and on every refresh, and distinct emails, tokens, hashes and
//! uuids stay distinct. SQL NULL stays NULL under every kind: it holds nothing personal.
//! Each kind's output belongs to a language [`super::language`] states and verification
//! checks: nothing of the production value survives but what that language allows (a
//! phone number's punctuation, a known provider's token prefix, a length).

use base64::Engine;
use base64::engine::general_purpose::GeneralPurpose;
use serde_json::Value;

use super::array::ArrayError;
use super::bytea::{self, ByteaError};
use super::json::{Node, walk};
use super::key::Key;
use super::shape::BaseType;
use crate::config::masking::{JsonMask, Mask};

const BCRYPT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::BCRYPT,
    base64::engine::general_purpose::NO_PAD,
);
pub(super) const FIRST_NAMES: &[&str] = &[
    "Alex", "Robin", "Sam", "Kim", "Charlie", "Jamie", "Taylor", "Morgan", "Casey", "Jordan",
    "Riley", "Avery", "Quinn", "Rowan", "Sasha", "Noa",
];
pub(super) const LAST_NAMES: &[&str] = &[
    "Smith", "Jones", "Garcia", "Müller", "Rossi", "Novak", "Silva", "Kowalski", "Dubois",
    "Jansen", "Larsen", "Murphy", "Tanaka", "Okafor", "Haddad", "Ivanova",
];
pub(super) const PLACEHOLDER: &str = "lorem ipsum dolor sit amet ";
/// What the `phone` mask keeps of a value: a phone number's punctuation.
pub(super) const PHONE_PUNCTUATION: &[u8] = b" +-()./";
/// What the `token` mask keeps besides a prefix: the separators tokens are made of.
pub(super) const TOKEN_SEPARATORS: &[u8] = b"_-.";
/// The token prefixes providers publish, which say which service a token is for and
/// nothing of whom: kept by the `token` mask (the longest that matches). Any other prefix is
/// masked with the rest: it could be a name (`jane_doe_...`).
pub(super) const TOKEN_PREFIXES: &[&str] = &[
    // Stripe
    "sk_live_",
    "sk_test_",
    "pk_live_",
    "pk_test_",
    "rk_live_",
    "rk_test_",
    "whsec_",
    "cus_",
    "acct_",
    "sub_",
    "pi_",
    "pm_",
    "ch_",
    "in_",
    "prod_",
    "price_",
    "seti_",
    "src_",
    "tok_",
    "evt_",
    "txn_",
    "cs_live_",
    "cs_test_",
    // GitHub, GitLab, Slack
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    // AWS, Google, OpenAI, Anthropic, SendGrid, Shopify, npm, PyPI, Square, Mailgun
    "AKIA",
    "ASIA",
    "AIza",
    "sk-proj-",
    "sk-ant-",
    "sk-",
    "SG.",
    "shpat_",
    "shpca_",
    "shppa_",
    "shpss_",
    "npm_",
    "pypi-",
    "sq0atp-",
    "sq0csp-",
    "key-",
];

/// What the masks derive their values from.
#[derive(Debug, Clone)]
pub struct Masks {
    key: Key,
    email_domain: String,
    /// The marker salt every masked password hash has, and `$2b$12$` with it encoded.
    password_salt: [u8; 16],
    password_prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("the value is not valid JSON, so its paths cannot be masked")]
    NotJson,
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error(transparent)]
    Bytea(#[from] ByteaError),
    #[error("mask \"{0}\" does not write bytes")]
    NotBytes(String),
}

impl Masks {
    pub fn new(key: Key, email_domain: &str) -> Masks {
        // Derived from the key, so production hashes (random salts) never carry it.
        let d = key.digest(&[b"staging-refresh masked password salt"]);
        let password_salt: [u8; 16] = d[..16].try_into().expect("16 of 32 bytes");
        Masks {
            password_prefix: format!("$2b$12${}", BCRYPT.encode(password_salt)),
            password_salt,
            key,
            email_domain: email_domain.to_owned(),
        }
    }

    pub fn password_prefix(&self) -> &str {
        &self.password_prefix
    }

    pub fn password_salt(&self) -> [u8; 16] {
        self.password_salt
    }

    pub fn email_domain(&self) -> &str {
        &self.email_domain
    }

    /// The masked value of one value (one element, for an array) of type `base`, as COPY
    /// text decoded: bytea's masks write bytes, the others text. `None` is NULL.
    pub fn apply_value(
        &self,
        mask: &Mask,
        base: &BaseType,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, KindError> {
        if *base != BaseType::Bytea {
            return self.apply(mask, value);
        }
        Ok(Some(match mask {
            Mask::Keep => value.to_vec(),
            Mask::Null => return Ok(None),
            // The constant as bytea reads it, like any type's.
            Mask::Redact(constant) => constant.as_bytes().to_vec(),
            // Keyed hex digits, one per byte: the same length, and a language verification
            // can tell from any production secret's bytes.
            Mask::Hash | Mask::Token => {
                let bytes = bytea::decode(value)?;
                let mut stream = self.stream(&bytes);
                let digits: Vec<u8> = bytes
                    .iter()
                    .map(|_| b"0123456789abcdef"[usize::from(stream.next() % 16)])
                    .collect();
                bytea::encode(&digits)
            }
            Mask::Text => {
                let length = bytea::decode(value)?.len();
                bytea::encode(
                    &PLACEHOLDER
                        .bytes()
                        .cycle()
                        .take(length)
                        .collect::<Vec<u8>>(),
                )
            }
            other => return Err(KindError::NotBytes(other.to_string())),
        }))
    }

    /// The masked value of `value` (text, COPY-decoded bytes); `None` is NULL.
    pub fn apply(&self, mask: &Mask, value: &[u8]) -> Result<Option<Vec<u8>>, KindError> {
        let digest = || self.key.digest(&[value]);
        Ok(Some(match mask {
            Mask::Keep => value.to_vec(),
            Mask::Null => return Ok(None),
            Mask::Redact(constant) => constant.as_bytes().to_vec(),
            Mask::Email => format!(
                "anon_{}@{}",
                &hex::encode(digest())[..16],
                self.email_domain
            )
            .into_bytes(),
            Mask::Name => {
                let d = digest();
                let first = FIRST_NAMES[d[0] as usize % FIRST_NAMES.len()];
                let last = LAST_NAMES[d[1] as usize % LAST_NAMES.len()];
                format!("{first} {last}").into_bytes()
            }
            // Letters and anything else too, not only digits: a note in a phone field
            // ("Jane, jane@example.org") leaves nothing but its punctuation.
            Mask::Phone => self.replace(value, |c| {
                if PHONE_PUNCTUATION.contains(&c) {
                    Class::Keep
                } else {
                    Class::Digit
                }
            }),
            Mask::Token => {
                let prefix = token_prefix(value);
                let mut out = value[..prefix].to_vec();
                out.extend(self.replace(&value[prefix..], |c| match c {
                    b'0'..=b'9' => Class::Digit,
                    b'A'..=b'Z' => Class::Upper,
                    c if TOKEN_SEPARATORS.contains(&c) => Class::Keep,
                    _ => Class::Lower,
                }));
                out
            }
            Mask::Hash => hex::encode(digest()).into_bytes(),
            Mask::Uuid => {
                let mut d = digest();
                d[6] = (d[6] & 0x0f) | 0x40;
                d[8] = (d[8] & 0x3f) | 0x80;
                let h = hex::encode(&d[..16]);
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
                .into_bytes()
            }
            Mask::Text => {
                let length = match std::str::from_utf8(value) {
                    Ok(text) => text.chars().count(),
                    Err(_) => value.len(),
                };
                PLACEHOLDER
                    .chars()
                    .cycle()
                    .take(length)
                    .collect::<String>()
                    .into_bytes()
            }
            Mask::Password => {
                let mut body = [0u8; 23];
                getrandom::fill(&mut body).expect("the OS random source works");
                format!("{}{}", self.password_prefix, BCRYPT.encode(body)).into_bytes()
            }
            Mask::Json(json) => self.json(json, value)?,
        }))
    }

    /// Each character (each byte, when `value` is not UTF-8) replaced as `class` says (by
    /// its first byte): drawn from the keyed hash of the whole value, or kept.
    fn replace(&self, value: &[u8], class: impl Fn(u8) -> Class) -> Vec<u8> {
        let mut stream = self.stream(value);
        let mut out = Vec::with_capacity(value.len());
        let mut put = |c: u8| {
            out.push(match class(c) {
                Class::Keep => c,
                Class::Digit => b'0' + stream.next() % 10,
                Class::Upper => b'A' + stream.next() % 26,
                Class::Lower => b'a' + stream.next() % 26,
            })
        };
        match std::str::from_utf8(value) {
            Ok(text) => text
                .chars()
                .for_each(|c| put(c.encode_utf8(&mut [0; 4]).as_bytes()[0])),
            Err(_) => value.iter().for_each(|&c| put(c)),
        }
        out
    }

    fn stream<'a>(&'a self, value: &'a [u8]) -> Stream<'a> {
        Stream {
            key: &self.key,
            value,
            block: [0; 32],
            used: 32,
            counter: 0,
        }
    }

    /// The document with its listed paths' strings and numbers masked by their masks, and
    /// every other one by `rest` (or kept).
    fn json(&self, json: &JsonMask, value: &[u8]) -> Result<Vec<u8>, KindError> {
        let mut doc: Value = serde_json::from_slice(value).map_err(|_| KindError::NotJson)?;
        walk(&mut doc, json, &mut |node| {
            let Node::Leaf(at, leaf) = node else {
                return Ok(());
            };
            let mask = match (at, &json.rest) {
                (Some(i), _) => &json.paths[i].1,
                (None, Some(rest)) => rest,
                (None, None) => return Ok(()),
            };
            self.mask_leaf(leaf, mask)
        })?;
        Ok(serde_json::to_vec(&doc).expect("a JSON value serializes"))
    }

    /// A string or number masked: a number stays one when its masked text reads back as
    /// that number, else becomes a string.
    fn mask_leaf(&self, leaf: &mut Value, mask: &Mask) -> Result<(), KindError> {
        let was_number = leaf.is_number();
        let text = match &mut *leaf {
            Value::String(text) => std::mem::take(text),
            other => other.to_string(),
        };
        *leaf = match self.apply(mask, text.as_bytes())? {
            None => Value::Null,
            Some(v) => {
                let v = String::from_utf8_lossy(&v).into_owned();
                match serde_json::from_str::<serde_json::Number>(&v) {
                    Ok(n) if was_number && n.to_string() == v => Value::Number(n),
                    _ => Value::String(v),
                }
            }
        };
        Ok(())
    }
}

/// What [`Masks::replace`] does with a character.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Keep,
    Digit,
    Upper,
    Lower,
}

/// The length of the known provider prefix `value` starts with (the longest), else 0.
fn token_prefix(value: &[u8]) -> usize {
    TOKEN_PREFIXES
        .iter()
        .filter(|p| value.starts_with(p.as_bytes()))
        .map(|p| p.len())
        .max()
        .unwrap_or(0)
}

/// Bytes of HMAC(key, value || counter) for counter 0, 1, ...: as many as a value needs.
struct Stream<'a> {
    key: &'a Key,
    value: &'a [u8],
    block: [u8; 32],
    used: usize,
    counter: u64,
}

impl Stream<'_> {
    fn next(&mut self) -> u8 {
        if self.used == self.block.len() {
            self.block = self.key.digest(&[self.value, &self.counter.to_le_bytes()]);
            self.counter += 1;
            self.used = 0;
        }
        self.used += 1;
        self.block[self.used - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks() -> Masks {
        Masks::new(Key::from_bytes(&[7; 32]), "staging.invalid")
    }

    fn mask(kind: &Mask, value: &str) -> String {
        String::from_utf8(masks().apply(kind, value.as_bytes()).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn values_keep_their_shape_and_mask_the_same_way_every_time() {
        let email = mask(&Mask::Email, "jane.doe@example.org");
        assert!(
            regex::Regex::new(r"^anon_[0-9a-f]{16}@staging\.invalid$")
                .unwrap()
                .is_match(&email),
            "{email}"
        );
        assert_eq!(email, mask(&Mask::Email, "jane.doe@example.org"));
        assert_ne!(email, mask(&Mask::Email, "john.doe@example.org"));

        let phone = mask(&Mask::Phone, "+44 20 7946-0958");
        assert_ne!(phone, "+44 20 7946-0958");
        assert!(
            regex::Regex::new(r"^\+\d\d \d\d \d{4}-\d{4}$")
                .unwrap()
                .is_match(&phone),
            "{phone}"
        );

        let token = mask(&Mask::Token, "sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        assert!(
            token.starts_with("sk_live_") && token.len() == 32,
            "{token}"
        );
        assert_ne!(token, "sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        assert!(mask(&Mask::Token, "cus_NffrFeUfNV2Hib").starts_with("cus_"));
        assert_eq!(mask(&Mask::Text, "Ünïcode tëxt"), "lorem ipsum ");
        let uuid = mask(&Mask::Uuid, "anything");
        assert!(
            regex::Regex::new(
                r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
            )
            .unwrap()
            .is_match(&uuid),
            "{uuid}"
        );
        assert_eq!(mask(&Mask::Redact("f".into()), "t"), "f");
        assert!(masks().apply(&Mask::Null, b"x").unwrap().is_none());
    }

    #[test]
    fn a_longer_phone_than_one_hash_block_is_masked_whole() {
        let long: String = "9".repeat(100);
        let masked = mask(&Mask::Phone, &long);
        assert_eq!(masked.len(), 100);
        assert!(masked.bytes().all(|c| c.is_ascii_digit()));
        assert_ne!(&masked[64..], &long[64..]);
    }

    #[test]
    fn masked_password_hashes_are_bcrypt_strings_with_the_marker_and_match_nothing() {
        let masks = masks();
        let a = mask(&Mask::Password, "$2b$12$same");
        let b = mask(&Mask::Password, "$2b$12$same");
        assert_ne!(a, b);
        for hash in [&a, &b] {
            assert!(
                hash.starts_with(masks.password_prefix()) && hash.len() == 60,
                "{hash}"
            );
            assert!(!bcrypt::verify("", hash).unwrap());
        }
    }

    #[test]
    fn json_paths_mask_strings_under_them_and_keep_the_rest() {
        let kind = Mask::Json(JsonMask {
            paths: vec![
                (vec!["contact".into(), "email".into()], Mask::Email),
                (vec!["phones".into()], Mask::Phone),
            ],
            rest: None,
        });
        let doc = r#"{"contact": {"email": "jane@example.org", "lang": "en"},
                      "phones": ["+1 555 0100", 4915112345678], "n": 1}"#;
        let masked: Value = serde_json::from_str(&mask(&kind, doc)).unwrap();
        assert_eq!(
            masked["contact"]["email"],
            mask(&Mask::Email, "jane@example.org")
        );
        assert_eq!(masked["contact"]["lang"], "en");
        assert_eq!(masked["n"], 1);
        assert!(masked["phones"][1].is_number());
        assert_ne!(masked["phones"][0], "+1 555 0100");
        assert!(masks().apply(&kind, b"not json").is_err());

        // `rest` masks every other string and number; keys stay.
        let kind = Mask::Json(JsonMask {
            paths: vec![(vec!["contact".into(), "email".into()], Mask::Email)],
            rest: Some(Box::new(Mask::Text)),
        });
        let masked: Value = serde_json::from_str(&mask(&kind, doc)).unwrap();
        assert_eq!(
            masked["contact"]["email"],
            mask(&Mask::Email, "jane@example.org")
        );
        assert_eq!(masked["contact"]["lang"], "lo");
        assert_eq!(
            masked["phones"],
            serde_json::json!(["lorem ipsum", "lorem ipsum d"])
        );
        assert_eq!(masked["n"], "l");
    }

    #[test]
    fn phone_leaves_only_punctuation_and_token_only_a_known_prefix() {
        let note = mask(&Mask::Phone, "Jane Doé, jane@example.org +1 (555) 013-9911");
        assert!(
            regex::Regex::new(r"^\d{4} \d{3}\d \d{12}\.\d{3} \+\d \(\d{3}\) \d{3}-\d{4}$")
                .unwrap()
                .is_match(&note),
            "{note}"
        );
        let name = mask(&Mask::Token, "jane_doe_4eC39HqLyjWDarjtT1zd");
        assert!(!name.starts_with("jane_doe_") && name.len() == 29, "{name}");
        assert_eq!(&name[4..5], "_", "separators stay: {name}");
        let token = mask(&Mask::Token, "ghp_x9Y@é+/=");
        assert!(
            regex::Regex::new(r"^ghp_[a-z][0-9][A-Z][a-z]{5}$")
                .unwrap()
                .is_match(&token),
            "{token}"
        );
        assert!(mask(&Mask::Token, "sk_live_abc").starts_with("sk_live_"));
        assert!(!mask(&Mask::Token, "sess_Lq0PzXHv93KdWm7Nc").starts_with("sess_"));
    }

    #[test]
    fn bytea_masks_write_bytes_of_the_same_length() {
        let m = masks();
        let apply = |mask: &Mask, value: &[u8]| {
            let out = m
                .apply_value(mask, &BaseType::Bytea, value)
                .unwrap()
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let hashed = apply(&Mask::Hash, b"\\x00ff10");
        assert!(
            regex::Regex::new(r"^\\x(3[0-9]|6[1-6]){3}$")
                .unwrap()
                .is_match(&hashed),
            "{hashed}"
        );
        assert_eq!(
            hashed,
            apply(&Mask::Token, b"\\000\\377\\020"),
            "both text forms mask alike"
        );
        assert_eq!(apply(&Mask::Text, b"\\x0000"), "\\x6c6f");
        assert_eq!(apply(&Mask::Redact("\\x01".into()), b"\\x00"), "\\x01");
        assert!(
            m.apply_value(&Mask::Email, &BaseType::Bytea, b"\\x00")
                .is_err()
        );
    }
}
