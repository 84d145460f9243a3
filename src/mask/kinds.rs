//! The mask kinds: how one production value becomes its staging value. Every kind but
//! `password` derives its output from the keyed hash of the value alone, so equal values
//! mask equally in every table and on every refresh, and distinct emails, tokens, hashes and
//! uuids stay distinct. SQL NULL stays NULL under every kind: it holds nothing personal.

use base64::Engine;
use base64::engine::general_purpose::GeneralPurpose;
use serde_json::Value;

use super::key::Key;
use crate::config::masking::Mask;

const BCRYPT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::BCRYPT,
    base64::engine::general_purpose::NO_PAD,
);
const FIRST_NAMES: &[&str] = &[
    "Alex", "Robin", "Sam", "Kim", "Charlie", "Jamie", "Taylor", "Morgan", "Casey", "Jordan",
    "Riley", "Avery", "Quinn", "Rowan", "Sasha", "Noa",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Jones", "Garcia", "Müller", "Rossi", "Novak", "Silva", "Kowalski", "Dubois",
    "Jansen", "Larsen", "Murphy", "Tanaka", "Okafor", "Haddad", "Ivanova",
];
const PLACEHOLDER: &str = "lorem ipsum dolor sit amet ";

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

    /// The masked value of `value` (COPY-decoded bytes); `None` is NULL.
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
            Mask::Phone => self.replace_chars(value, |c| c.is_ascii_digit()),
            Mask::Token => {
                let prefix = token_prefix(value);
                let mut out = value[..prefix].to_vec();
                out.extend(self.replace_chars(&value[prefix..], |c| c.is_ascii_alphanumeric()));
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
            Mask::Json(paths) => {
                let mut doc: Value =
                    serde_json::from_slice(value).map_err(|_| KindError::NotJson)?;
                for (path, mask) in paths {
                    self.mask_path(&mut doc, path, mask)?;
                }
                serde_json::to_vec(&doc).expect("a JSON value serializes")
            }
        }))
    }

    /// Each character `is_target` accepts replaced by one of its class (digit, lower, upper),
    /// drawn from the keyed hash of the whole value.
    fn replace_chars(&self, value: &[u8], is_target: impl Fn(u8) -> bool) -> Vec<u8> {
        let mut stream = Stream {
            key: &self.key,
            value,
            block: [0; 32],
            used: 32,
            counter: 0,
        };
        value
            .iter()
            .map(|&c| {
                if !is_target(c) {
                    return c;
                }
                let r = stream.next();
                match c {
                    b'0'..=b'9' => b'0' + r % 10,
                    b'a'..=b'z' => b'a' + r % 26,
                    _ => b'A' + r % 26,
                }
            })
            .collect()
    }

    /// Masks what `path` reaches in `doc`; arrays on the way apply the rest to every element.
    fn mask_path(&self, doc: &mut Value, path: &[String], mask: &Mask) -> Result<(), KindError> {
        if let Value::Array(items) = doc {
            for item in items {
                self.mask_path(item, path, mask)?;
            }
            return Ok(());
        }
        match path.split_first() {
            Some((first, rest)) => match doc.get_mut(first.as_str()) {
                Some(inner) => self.mask_path(inner, rest, mask),
                None => Ok(()),
            },
            None => self.mask_leaf(doc, mask),
        }
    }

    /// A leaf and every string and number inside it.
    fn mask_leaf(&self, doc: &mut Value, mask: &Mask) -> Result<(), KindError> {
        match doc {
            Value::Null | Value::Bool(_) => {}
            Value::Array(items) => {
                for item in items {
                    self.mask_leaf(item, mask)?;
                }
            }
            Value::Object(fields) => {
                for (_, item) in fields.iter_mut() {
                    self.mask_leaf(item, mask)?;
                }
            }
            Value::String(text) => {
                *doc = match self.apply(mask, text.as_bytes())? {
                    Some(v) => Value::String(String::from_utf8_lossy(&v).into_owned()),
                    None => Value::Null,
                };
            }
            Value::Number(n) => {
                let text = n.to_string();
                *doc = match self.apply(mask, text.as_bytes())? {
                    Some(v) => serde_json::from_slice::<serde_json::Number>(&v)
                        .map(Value::Number)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&v).into())),
                    None => Value::Null,
                };
            }
        }
        Ok(())
    }
}

/// The length of a token's prefix: letter groups each ending in `_` (`sk_live_`, `cus_`).
fn token_prefix(value: &[u8]) -> usize {
    let mut prefix = 0;
    let mut i = 0;
    while i < value.len() && value[i].is_ascii_alphabetic() {
        i += 1;
        if value.get(i) == Some(&b'_') {
            i += 1;
            prefix = i;
        }
    }
    prefix
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
        let kind = Mask::Json(vec![
            (vec!["contact".into(), "email".into()], Mask::Email),
            (vec!["phones".into()], Mask::Phone),
        ]);
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
    }
}
