//! The language of each mask's output: every value a mask writes belongs to it, and it holds
//! nothing of a production value but what the mask keeps on purpose (a length, a phone
//! number's punctuation, a known provider's token prefix). Verification checks every
//! masked column's values against it, so a value no mask wrote (kept by a rule that did not
//! apply, written back by code of the dump's or by `extra_sql`) fails the run.

use regex::Regex;

use super::json::{Node, leaf_text, walk};
use super::kinds::{FIRST_NAMES, LAST_NAMES, PHONE_PUNCTUATION, PLACEHOLDER, TOKEN_SEPARATORS};
use super::shape::BaseType;
use crate::config::masking::{JsonMask, Mask};

#[derive(Debug, Clone)]
pub enum Language {
    /// NULL: no value at all.
    Null,
    /// The constant, as the column's type reads it.
    Constant(String),
    /// What this anchored pattern matches: a value's text, or bytea's escape form (where a
    /// byte other than printable ASCII shows as a backslash escape). PostgreSQL's regular
    /// expressions read the pattern as the regex crate does.
    Pattern(Regex),
    /// JSON documents whose strings and numbers under each of the mask's paths are in that
    /// path's language, and the others in `rest`'s (`None`: anything).
    Json {
        mask: JsonMask,
        paths: Vec<Language>,
        rest: Option<Box<Language>>,
    },
}

/// What `mask` writes into one value (one element, for an array) of type `base`; `None`
/// for `keep`, which writes nothing.
pub fn language(
    mask: &Mask,
    base: &BaseType,
    email_domain: &str,
    password_prefix: &str,
) -> Option<Language> {
    let bytes = *base == BaseType::Bytea;
    let pattern =
        |p: String| Language::Pattern(Regex::new(&p).expect("the masks' patterns are valid"));
    Some(match mask {
        Mask::Keep => return None,
        Mask::Null => Language::Null,
        Mask::Redact(constant) => Language::Constant(constant.clone()),
        Mask::Email => pattern(format!(
            "^anon_[0-9a-f]{{16}}@{}$",
            regex::escape(email_domain)
        )),
        Mask::Name => pattern(format!(
            "^(?:{}) (?:{})$",
            FIRST_NAMES.join("|"),
            LAST_NAMES.join("|")
        )),
        Mask::Phone => pattern(format!("^[0-9{}]*$", class(PHONE_PUNCTUATION))),
        Mask::Hash | Mask::Token if bytes => pattern("^[0-9a-f]*$".into()),
        Mask::Token => pattern(format!("^[A-Za-z0-9{}]*$", class(TOKEN_SEPARATORS))),
        Mask::Hash => pattern("^[0-9a-f]{64}$".into()),
        Mask::Uuid => {
            pattern("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$".into())
        }
        // Whole placeholders, then a beginning of one: `(?:l(?:o(?:r...)?)?)?`.
        Mask::Text => pattern(format!(
            "^(?:{})*{}$",
            regex::escape(PLACEHOLDER),
            PLACEHOLDER
                .chars()
                .rev()
                .fold(String::new(), |inner, c| format!(
                    "(?:{}{inner})?",
                    regex::escape(&c.to_string())
                ))
        )),
        Mask::Password => pattern(format!(
            "^{}[./A-Za-z0-9]{{31}}$",
            regex::escape(password_prefix)
        )),
        Mask::Json(json) => {
            let inner = |m: &Mask| language(m, &BaseType::Text, email_domain, password_prefix);
            Language::Json {
                paths: json
                    .paths
                    .iter()
                    .map(|(_, m)| inner(m).expect("keep is refused inside JSON"))
                    .collect(),
                rest: json.rest.as_deref().and_then(inner).map(Box::new),
                mask: json.clone(),
            }
        }
    })
}

/// `chars` for a bracket expression: `-` last, where it is itself.
fn class(chars: &[u8]) -> String {
    let mut chars: Vec<u8> = chars.to_vec();
    chars.sort_by_key(|&c| c == b'-');
    String::from_utf8(chars).expect("ASCII")
}

impl Language {
    /// Whether `text` (a value's text, bytea's escape form) is in the language; a
    /// constant's is compared as text.
    pub fn contains(&self, text: &str) -> bool {
        match self {
            Language::Null => false,
            Language::Constant(constant) => text == constant,
            Language::Pattern(pattern) => pattern.is_match(text),
            Language::Json { mask, paths, rest } => {
                let Ok(mut doc) = serde_json::from_str(text) else {
                    return false;
                };
                walk(&mut doc, mask, &mut |node| match node {
                    Node::Leaf(at, leaf) => {
                        let language = match at {
                            Some(i) => Some(&paths[i]),
                            None => rest.as_deref(),
                        };
                        match language {
                            Some(l) if !l.contains(&leaf_text(leaf)) => Err(()),
                            _ => Ok(()),
                        }
                    }
                    Node::Key(_) => Ok(()),
                })
                .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::key::Key;
    use crate::mask::kinds::Masks;

    const VALUES: &[&str] = &[
        "jane.doe@example.org",
        "+44 20 7946-0958",
        "Jane Doe, call +1 (555) 013-9911 or jane@example.org",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "jane_doe_4eC39HqLyjWDarjtT1zdp7dc",
        "Ünïcode tëxt with spaces\tand\na newline",
        "",
        "x",
        "lorem ipsum dolor sit amet lorem ipsum dolor",
    ];

    #[test]
    fn every_mask_writes_into_its_language_and_nothing_personal_is_in_it() {
        let masks = Masks::new(Key::from_bytes(&[3; 32]), "staging.invalid");
        let kinds = [
            Mask::Redact("redacted".into()),
            Mask::Email,
            Mask::Name,
            Mask::Phone,
            Mask::Token,
            Mask::Hash,
            Mask::Uuid,
            Mask::Text,
            Mask::Password,
        ];
        for mask in &kinds {
            let lang = language(
                mask,
                &BaseType::Text,
                "staging.invalid",
                masks.password_prefix(),
            )
            .unwrap();
            for value in VALUES {
                let out = masks.apply(mask, value.as_bytes()).unwrap().unwrap();
                let out = String::from_utf8(out).unwrap();
                assert!(lang.contains(&out), "{mask}: {value:?} -> {out:?}");
                for personal in ["jane", "Jane", "@example.org", "7946", "Doe"] {
                    assert!(
                        !out.contains(personal) || value.is_empty(),
                        "{mask}: {out:?}"
                    );
                }
            }
            for outside in ["jane.doe@example.org", "Jane Doe", "x\u{1}"] {
                assert!(!lang.contains(outside), "{mask} takes {outside:?}");
            }
        }
        for mask in [Mask::Hash, Mask::Token, Mask::Text] {
            let lang = language(&mask, &BaseType::Bytea, "x", "x").unwrap();
            for value in [&b"\\x00ff10"[..], b"\\x", b"Ja\\000"] {
                let out = masks
                    .apply_value(&mask, &BaseType::Bytea, value)
                    .unwrap()
                    .unwrap();
                let bytes = crate::mask::bytea::decode(&out).unwrap();
                let length = crate::mask::bytea::decode(value).unwrap().len();
                assert_eq!(bytes.len(), length, "{mask} keeps the length");
                assert!(
                    lang.contains(std::str::from_utf8(&bytes).unwrap()),
                    "{mask}: {bytes:?}"
                );
            }
            assert!(!lang.contains("\\000\\377"));
        }
    }

    #[test]
    fn a_json_mask_s_language_reads_the_paths_and_the_rest() {
        let masks = Masks::new(Key::from_bytes(&[3; 32]), "staging.invalid");
        let json = |rest: Option<Mask>| {
            Mask::Json(JsonMask {
                paths: vec![(vec!["contact".into(), "email".into()], Mask::Email)],
                rest: rest.map(Box::new),
            })
        };
        let doc =
            r#"{"contact": {"email": "jane@example.org", "name": "Jane Doe"}, "n": [1, "+1 555"]}"#;
        for mask in [json(None), json(Some(Mask::Text)), json(Some(Mask::Null))] {
            let lang = language(&mask, &BaseType::Jsonb, "staging.invalid", "x").unwrap();
            let out =
                String::from_utf8(masks.apply(&mask, doc.as_bytes()).unwrap().unwrap()).unwrap();
            assert!(lang.contains(&out), "{mask}: {out}");
            assert!(!lang.contains(doc), "{mask} takes the production document");
            assert_eq!(out.contains("Jane Doe"), mask == json(None), "{out}");
        }
    }
}
