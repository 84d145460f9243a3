//! Whether a mask fits a column, decided from the column's shape before any row is loaded:
//! the mask writes its type (text, bytes, a JSON document, a constant), within the lengths
//! the type and its CHECKs allow ([`limits`]), and a `null` mask meets neither NOT NULL nor
//! a CHECK that tests for NULL. Most masks' output length is known without a value; masks
//! that keep a value's length always fit. `rules --toml` asks the same question of the
//! masks it suggests.

use super::bytea;
use super::kinds::{FIRST_NAMES, LAST_NAMES};
use super::limits::{self, Measure};
use super::shape::{BaseType, ColumnShape};
use crate::config::masking::Mask;

/// Why a mask does not fit a column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    #[error("mask \"{mask}\" does not fit {type_name}: {why}")]
    Type {
        mask: String,
        type_name: String,
        why: String,
    },
    #[error(
        "mask \"{mask}\" writes {writes}, {} than the {limit} {unit} that {set_by} {}",
        if *.over { "more" } else { "fewer" },
        if *.over { "allows" } else { "requires" }
    )]
    Length {
        mask: String,
        /// `38 characters`, `2 to 16 characters`, `documents of any length`.
        writes: String,
        /// Longer than the limit allows (else shorter than it requires).
        over: bool,
        limit: u64,
        unit: &'static str,
        /// What sets the limit: `the type character varying(20)`, `CHECK name (...)`.
        set_by: String,
    },
    #[error("mask \"null\" does not fit: the column is NOT NULL")]
    NotNull,
    #[error(
        "mask \"null\" does not fit: CHECK {check} {} tests for NULL{}",
        .definition.trim_start_matches("CHECK "),
        if .others.is_empty() { String::new() } else { format!(" (with {})", .others.join(", ")) }
    )]
    NullCheck {
        check: String,
        definition: String,
        /// The other columns it names.
        others: Vec<String>,
    },
}

/// What one value a mask writes measures.
enum Output {
    /// The value's own length (in characters; in bytes never more).
    Same,
    /// Between these, in characters and in bytes.
    Between {
        chars: (u64, u64),
        bytes: (u64, u64),
    },
    /// Any length.
    Any,
}

/// Whether `mask` fits `shape`; `email_domain` is what masked emails end with.
pub fn fit(mask: &Mask, shape: &ColumnShape, email_domain: &str) -> Result<(), Misfit> {
    if *mask == Mask::Keep {
        return Ok(());
    }
    if *mask == Mask::Null {
        return fit_null(shape);
    }
    fit_type(mask, shape)?;
    let output = output(mask, &shape.base, email_domain);
    for bound in limits::bounds(shape) {
        let (low, high) = match (&output, bound.measure) {
            (Output::Same, _) => continue,
            (Output::Between { chars, .. }, Measure::Chars) => *chars,
            (Output::Between { bytes, .. }, Measure::Bytes) => *bytes,
            (Output::Any, _) => (0, u64::MAX),
        };
        let over = bound.max.filter(|&max| high > max);
        if over.is_some() || low < bound.min {
            let unit = bound.measure.unit();
            return Err(Misfit::Length {
                mask: mask.to_string(),
                writes: match output {
                    Output::Any => "documents of any length".into(),
                    _ if low == high => format!("{low} {unit}"),
                    _ => format!("{low} to {high} {unit}"),
                },
                over: over.is_some(),
                limit: over.unwrap_or(bound.min),
                unit,
                set_by: bound.source,
            });
        }
    }
    Ok(())
}

fn fit_null(shape: &ColumnShape) -> Result<(), Misfit> {
    if shape.not_null {
        return Err(Misfit::NotNull);
    }
    match limits::null_sensitive(shape).first() {
        Some(check) => Err(Misfit::NullCheck {
            check: check.name.clone(),
            definition: check.definition.clone(),
            others: check
                .columns
                .iter()
                .filter(|c| **c != shape.name)
                .cloned()
                .collect(),
        }),
        None => Ok(()),
    }
}

/// Whether `mask` writes values of `shape`'s type.
fn fit_type(mask: &Mask, shape: &ColumnShape) -> Result<(), Misfit> {
    let why = match (&shape.base, mask) {
        (_, Mask::Keep | Mask::Null) => None,
        (BaseType::Text, _) => None,
        (BaseType::Xml, Mask::Redact(c)) if c.contains(['<', '&']) => {
            Some("redact's value would be markup; give one without < or &")
        }
        (BaseType::Xml, Mask::Json(_)) => {
            Some("it is not JSON; the text masks, redact or null fit")
        }
        (BaseType::Xml, _) => None,
        (BaseType::Bytea, Mask::Hash | Mask::Token | Mask::Text) => None,
        (BaseType::Bytea, Mask::Redact(c)) if bytea::decode(c.as_bytes()).is_err() => {
            Some("redact's value is not bytea text (\\x and hex digits, or escapes)")
        }
        (BaseType::Bytea, Mask::Redact(_)) => None,
        (BaseType::Bytea, _) => Some(
            "bytea holds bytes: hash, token and text write keyed bytes of the same length; \
             redact and null fit too",
        ),
        (BaseType::Json | BaseType::Jsonb, Mask::Json(_)) => None,
        (BaseType::Json | BaseType::Jsonb, Mask::Redact(c))
            if serde_json::from_str::<serde_json::Value>(c).is_err() =>
        {
            Some("redact's value is not a JSON document")
        }
        (BaseType::Json | BaseType::Jsonb, Mask::Redact(_)) => None,
        (BaseType::Json | BaseType::Jsonb, _) => Some(
            "a JSON document takes mask = \"json\" (paths, rest), redact with a JSON value, or null",
        ),
        (BaseType::NotPersonal, Mask::Uuid | Mask::Redact(_)) => None,
        (BaseType::NotPersonal, _) => Some(
            "its type holds nothing personal and needs no rule; redact, null or uuid (on a uuid) fit",
        ),
        (BaseType::Network | BaseType::Other, Mask::Redact(_)) => None,
        (BaseType::Network, _) => Some("a network address takes null or redact (an address)"),
        (BaseType::Other, _) => Some(
            "it is not text (a composite, range or other type): null, redact (a value of the \
             type) or an [[anonymize.table]] rule fit",
        ),
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Misfit::Type {
            mask: mask.to_string(),
            type_name: shape.type_name.clone(),
            why: why.into(),
        }),
    }
}

/// What one value `mask` writes into a value of `base` measures.
fn output(mask: &Mask, base: &BaseType, email_domain: &str) -> Output {
    let exactly = |text: &str| Output::Between {
        chars: (text.chars().count() as u64, text.chars().count() as u64),
        bytes: (text.len() as u64, text.len() as u64),
    };
    match mask {
        // `keep` and `null` (fitted apart) write nothing longer than the value.
        Mask::Keep | Mask::Null | Mask::Phone | Mask::Token | Mask::Text => Output::Same,
        Mask::Hash if *base == BaseType::Bytea => Output::Same,
        Mask::Redact(constant) if *base == BaseType::Bytea => {
            let n = bytea::decode(constant.as_bytes()).map_or(0, |b| b.len() as u64);
            Output::Between {
                chars: (n, n),
                bytes: (n, n),
            }
        }
        Mask::Redact(constant) => exactly(constant),
        Mask::Email => exactly(&format!("anon_{:016}@{email_domain}", 0)),
        Mask::Hash => exactly(&"0".repeat(64)),
        Mask::Uuid => exactly(&"0".repeat(36)),
        Mask::Password => exactly(&"0".repeat(60)),
        Mask::Name => {
            let names = FIRST_NAMES
                .iter()
                .flat_map(|first| LAST_NAMES.iter().map(move |last| format!("{first} {last}")));
            let (mut chars, mut bytes) = ((u64::MAX, 0), (u64::MAX, 0));
            for name in names {
                let (c, b) = (name.chars().count() as u64, name.len() as u64);
                chars = (chars.0.min(c), chars.1.max(c));
                bytes = (bytes.0.min(b), bytes.1.max(b));
            }
            Output::Between { chars, bytes }
        }
        Mask::Json(_) => Output::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::masking::JsonMask;
    use crate::mask::shape::Check;

    fn shape(type_name: &str, base: BaseType) -> ColumnShape {
        ColumnShape::plain("note", type_name, base)
    }

    fn check(shape: &mut ColumnShape, name: &str, definition: &str, columns: &[&str]) {
        shape.checks.push(Check {
            name: name.into(),
            definition: definition.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        });
    }

    fn misfit(mask: &Mask, shape: &ColumnShape) -> String {
        fit(mask, shape, "staging.invalid").unwrap_err().to_string()
    }

    #[test]
    fn lengths_from_the_type_and_checks_decide_before_any_value() {
        let mut s = shape("character varying(20)", BaseType::Text);
        s.type_length = Some(20);
        for mask in [
            Mask::Phone,
            Mask::Token,
            Mask::Text,
            Mask::Name,
            Mask::Redact("x".into()),
        ] {
            assert_eq!(fit(&mask, &s, "staging.invalid"), Ok(()), "{mask}");
        }
        assert_eq!(
            misfit(&Mask::Email, &s),
            "mask \"email\" writes 37 characters, more than the 20 characters that the type \
             character varying(20) allows"
        );
        let mut s = shape("text", BaseType::Text);
        check(
            &mut s,
            "c_note_check",
            "CHECK ((char_length(note) <= 24))",
            &["note"],
        );
        assert_eq!(fit(&Mask::Name, &s, "x"), Ok(()));
        assert_eq!(fit(&Mask::Email, &s, "x"), Ok(()));
        assert!(fit(&Mask::Email, &s, "x.io").is_err());
        assert_eq!(
            misfit(&Mask::Hash, &s),
            "mask \"hash\" writes 64 characters, more than the 24 characters that CHECK \
             c_note_check ((char_length(note) <= 24)) allows"
        );
        assert!(misfit(&Mask::Json(JsonMask::default()), &s).contains("documents of any length"));
        let mut s = shape("text", BaseType::Text);
        check(
            &mut s,
            "c_min",
            "CHECK ((char_length(note) >= 12))",
            &["note"],
        );
        assert_eq!(
            misfit(&Mask::Name, &s),
            "mask \"name\" writes 9 to 16 characters, fewer than the 12 characters that CHECK \
             c_min ((char_length(note) >= 12)) requires"
        );
        let mut s = shape("bytea", BaseType::Bytea);
        check(&mut s, "k", "CHECK ((octet_length(note) = 32))", &["note"]);
        assert_eq!(fit(&Mask::Hash, &s, "x"), Ok(()));
        assert!(misfit(&Mask::Redact("\\x00".into()), &s).contains("fewer than the 32 bytes"));
    }

    #[test]
    fn masks_write_their_column_s_type() {
        let bytea = shape("bytea", BaseType::Bytea);
        for mask in [
            Mask::Hash,
            Mask::Token,
            Mask::Text,
            Mask::Redact("\\x00".into()),
        ] {
            assert_eq!(fit(&mask, &bytea, "x"), Ok(()), "{mask}");
        }
        assert_eq!(
            misfit(&Mask::Email, &bytea),
            "mask \"email\" does not fit bytea: bytea holds bytes: hash, token and text write \
             keyed bytes of the same length; redact and null fit too"
        );
        assert!(misfit(&Mask::Redact("\\q".into()), &bytea).contains("not bytea text"));
        let jsonb = shape("jsonb", BaseType::Jsonb);
        assert_eq!(fit(&Mask::Json(JsonMask::default()), &jsonb, "x"), Ok(()));
        assert_eq!(fit(&Mask::Redact("{}".into()), &jsonb, "x"), Ok(()));
        assert!(misfit(&Mask::Text, &jsonb).contains("a JSON document takes"));
        assert!(misfit(&Mask::Redact("redacted".into()), &jsonb).contains("not a JSON document"));
        let xml = shape("xml", BaseType::Xml);
        assert_eq!(fit(&Mask::Text, &xml, "x"), Ok(()));
        assert!(misfit(&Mask::Redact("<a/>".into()), &xml).contains("markup"));
        let inet = shape("inet", BaseType::Network);
        assert_eq!(fit(&Mask::Redact("192.0.2.1".into()), &inet, "x"), Ok(()));
        assert!(misfit(&Mask::Hash, &inet).contains("network address"));
        let flag = shape("boolean", BaseType::NotPersonal);
        assert_eq!(fit(&Mask::Redact("f".into()), &flag, "x"), Ok(()));
        assert!(misfit(&Mask::Email, &flag).contains("holds nothing personal"));
        assert!(
            misfit(&Mask::Text, &shape("public.address", BaseType::Other)).contains("composite")
        );
    }

    #[test]
    fn null_meets_neither_not_null_nor_a_check_that_tests_for_it() {
        let mut s = shape("text", BaseType::Text);
        assert_eq!(fit(&Mask::Null, &s, "x"), Ok(()));
        check(
            &mut s,
            "c_len",
            "CHECK ((char_length(note) <= 24))",
            &["note"],
        );
        assert_eq!(fit(&Mask::Null, &s, "x"), Ok(()));
        check(
            &mut s,
            "both",
            "CHECK ((num_nulls(note, other) = ANY (ARRAY[0, 2])))",
            &["note", "other"],
        );
        assert_eq!(
            misfit(&Mask::Null, &s),
            "mask \"null\" does not fit: CHECK both ((num_nulls(note, other) = ANY (ARRAY[0, 2]))) \
             tests for NULL (with other)"
        );
        s.not_null = true;
        assert_eq!(
            misfit(&Mask::Null, &s),
            "mask \"null\" does not fit: the column is NOT NULL"
        );
    }
}
