//! The mask to suggest for an unclassified column, in three steps: what the column holds
//! ([`holds`]: its name and its values' [`Evidence`]), the masks for that kind in order of
//! preference ([`masks_for`]), and the first of them the column takes (the run's own
//! [`fit`]; distinct values for distinct ones where a unique index says so), a NULL or a
//! constant of its type last.

use std::collections::BTreeMap;

use serde::Serialize;

use super::evidence::Evidence;
use crate::config::AnonymizeConfig;
use crate::config::masking::{JsonMask, Mask};
use crate::mask::fit::fit;
use crate::mask::shape::{BaseType, ColumnShape};
use crate::verify::scan::{
    ADDRESS, CARD, EMAIL, IBAN, IDENTITY, IP, NAME, PASSWORD, PHONE, POSTCODE, SECRET, TOKEN,
    USERNAME,
};

/// A mask to review for an unclassified column.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// A mask kind; `keep` when nothing looked personal (review it).
    pub mask: &'static str,
    /// A json mask's paths.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, &'static str>,
    /// A redact mask's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why, in a few words.
    pub why: &'static str,
}

/// Kinds whose values have a shape of their own: a column of them is that kind whatever its
/// name says (a `login` of emails is emails), and one of them in free text is personal.
const SHAPED: &[&str] = &[EMAIL, PHONE, IP, TOKEN, PASSWORD, IBAN, CARD];
/// Kinds whose masks rewrite only part of a value, or write a short one: free text under
/// such a name (a `contact_name` with a phone number in it) is masked as text.
const PARTIAL: &[&str] = &[
    PHONE, NAME, USERNAME, ADDRESS, POSTCODE, IDENTITY, CARD, IBAN,
];

/// What a column holds, as far as its mask goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Kind(&'static str),
    /// Text with personal values among other words.
    FreeText,
    Nothing,
}

/// What the column holds, and why: its values' shape when most are one shaped kind alone,
/// else its name, else what its values hold.
fn holds(evidence: &Evidence) -> (Holds, &'static str) {
    let values = evidence.values;
    let alone = evidence
        .alone
        .iter()
        .max_by_key(|(_, n)| **n)
        .filter(|(_, n)| **n * 2 >= values)
        .map(|(kind, _)| *kind);
    let in_text = evidence.kinds.iter().any(|(kind, &n)| {
        // A name or an address is seen in text by a lookup that can err: a few do not count,
        // nor do values that are one alone (a company named "Alpha Industries").
        let within = n - evidence.alone.get(kind).copied().unwrap_or(0);
        SHAPED.contains(kind) || (within >= 2 && within * 20 >= values)
    });
    match (evidence.name, alone) {
        (Some(name), Some(kind))
            if kind != name && SHAPED.contains(&kind) && ![SECRET, PASSWORD].contains(&name) =>
        {
            (Holds::Kind(kind), "most values are this kind")
        }
        (Some(name), Some(kind)) if kind == name => {
            (Holds::Kind(kind), "the name and most values say so")
        }
        (Some(name), None) if in_text && PARTIAL.contains(&name) => (
            Holds::FreeText,
            "values hold personal data among other text",
        ),
        (Some(name), _) => (Holds::Kind(name), "the column's name says so"),
        (None, Some(kind)) => (Holds::Kind(kind), "most values are this kind"),
        (None, None) if in_text => (
            Holds::FreeText,
            "some values hold personal data among other text",
        ),
        (None, None) => (
            Holds::Nothing,
            "review: probably keep, nothing personal seen",
        ),
    }
}

/// The masks for what a column holds, best first; `token` last, as it fits any text column
/// and keeps distinct values distinct.
fn masks_for(holds: Holds) -> Vec<Mask> {
    let kind = match holds {
        Holds::Nothing => return vec![Mask::Keep],
        Holds::FreeText => return vec![Mask::Text, Mask::Token],
        Holds::Kind(kind) => kind,
    };
    let mut masks = match kind {
        EMAIL => vec![Mask::Email, Mask::Hash, Mask::Token],
        PHONE => vec![Mask::Phone],
        NAME => vec![Mask::Name, Mask::Text],
        // Logins are unique: distinct values.
        USERNAME => vec![Mask::Hash, Mask::Token],
        // Same length, same characters' classes, distinct: whatever length limit or unique
        // index the column has.
        SECRET | TOKEN | POSTCODE | IDENTITY => vec![Mask::Token],
        PASSWORD => vec![Mask::Password, Mask::Token],
        IP => vec![Mask::Null],
        // Addresses, personal text, IBANs and card numbers: a placeholder of the same length.
        _ => vec![Mask::Text],
    };
    if !masks.contains(&Mask::Token) {
        masks.push(Mask::Token);
    }
    masks
}

/// Whether `mask` writes distinct values for distinct ones (NULLs never collide).
fn distinct(mask: &Mask) -> bool {
    !matches!(mask, Mask::Text | Mask::Name | Mask::Redact(_))
}

/// The mask for values of `kind` inside a json document.
fn path_mask(kind: &str) -> Mask {
    match kind {
        EMAIL => Mask::Email,
        PHONE => Mask::Phone,
        NAME => Mask::Name,
        SECRET | TOKEN | USERNAME | POSTCODE | IDENTITY => Mask::Token,
        PASSWORD => Mask::Password,
        _ => Mask::Text,
    }
}

/// A constant of the column's type that holds nothing: for a `redact` mask when no other
/// mask fits.
fn placeholder(column: &ColumnShape) -> &'static str {
    if column.array {
        return "{}";
    }
    let type_is = |name: &str| column.type_name.ends_with(name);
    match column.base {
        BaseType::Json | BaseType::Jsonb => "{}",
        BaseType::Bytea => "",
        // The addresses RFC 5737 and RFC 7042 reserve for documentation.
        BaseType::Network if type_is("cidr") => "192.0.2.0/24",
        BaseType::Network if type_is("macaddr8") => "00:00:5e:ff:fe:00:53:00",
        BaseType::Network if type_is("macaddr") => "00:00:5e:00:53:00",
        BaseType::Network => "192.0.2.1",
        BaseType::Other if type_is("hstore") => "",
        _ if column.type_length.is_some_and(|max| max < 8) => "",
        _ => "redacted",
    }
}

/// The suggestion for `column` (`unique`: a unique index names it alone), from what its name
/// and values showed.
pub(super) fn suggest(
    column: &ColumnShape,
    unique: bool,
    evidence: &Evidence,
    cfg: &AnonymizeConfig,
) -> Suggestion {
    let (holds, mut why) = if column.base == BaseType::Network {
        (Holds::Kind(IP), "network addresses are personal data")
    } else {
        holds(evidence)
    };
    let mut masks = masks_for(holds);
    let json = matches!(column.base, BaseType::Json | BaseType::Jsonb);
    if json && !column.array && holds != Holds::Nothing {
        masks = if evidence.paths.is_empty() {
            why = "personal values found, at no path a mask can name";
            // A placeholder text would not be valid JSON.
            vec![Mask::Redact("{}".into())]
        } else {
            why = "personal values found at these paths";
            let paths = evidence
                .paths
                .iter()
                .filter_map(|(path, kinds)| {
                    let (kind, _) = kinds.iter().max_by_key(|(_, n)| **n)?;
                    Some((
                        path.split('.').map(str::to_owned).collect(),
                        path_mask(kind),
                    ))
                })
                .collect();
            vec![Mask::Json(JsonMask { paths, rest: None })]
        };
    }
    if holds != Holds::Nothing {
        masks.extend([Mask::Null, Mask::Redact(placeholder(column).into())]);
    }
    let mask = masks
        .into_iter()
        .find(|m| fit(m, column, &cfg.email_domain).is_ok() && (distinct(m) || !unique))
        .unwrap_or_else(|| Mask::Redact(placeholder(column).into()));
    Suggestion {
        mask: (&mask).into(),
        paths: match &mask {
            Mask::Json(json) => json
                .paths
                .iter()
                .map(|(path, m)| (path.join("."), m.into()))
                .collect(),
            _ => BTreeMap::new(),
        },
        value: match mask {
            Mask::Redact(value) => Some(value),
            _ => None,
        },
        why,
    }
}
