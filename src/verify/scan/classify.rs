//! What a value or a column's name looks like it holds: emails, phone numbers, API tokens,
//! IBANs, card numbers (with a valid Luhn digit), or for names: secrets and passwords.
//! Emails in the masked domain and the staging admin's are not personal.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::config::AnonymizeConfig;

/// What a column's name says it holds, when that is PII or a secret.
pub(crate) fn kind_by_name(column: &str) -> Option<&'static str> {
    let lower = column.to_ascii_lowercase();
    if lower.contains("api_key") || lower.contains("apikey") {
        return Some("secret");
    }
    lower.split(['_', '-']).find_map(|part| match part {
        "email" | "mail" | "e-mail" => Some("email"),
        "phone" | "mobile" | "telephone" | "tel" => Some("phone"),
        "token" | "secret" => Some("secret"),
        "password" | "passwd" => Some("password"),
        "iban" => Some("iban"),
        "card" | "pan" => Some("card"),
        _ => None,
    })
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}").unwrap()
});
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\w+])(\+[1-9][0-9 ().-]{6,20}[0-9])").unwrap());
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:[spr]k_live_[A-Za-z0-9]{8,}|cus_[A-Za-z0-9]{8,}|ghp_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    )
    .unwrap()
});
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b").unwrap()
});
/// Card numbers as they are written: one run of digits, or groups of four (Amex 4-6-5)
/// separated all by spaces or all by dashes.
static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:[0-9]{13,19}|[0-9]{4}(?: [0-9]{4}){2} [0-9]{1,7}|[0-9]{4}(?:-[0-9]{4}){2}-[0-9]{1,7}|3[47][0-9]{2} [0-9]{6} [0-9]{5}|3[47][0-9]{2}-[0-9]{6}-[0-9]{5})\b",
    )
    .unwrap()
});
/// A UUID's digits can pass the Luhn check: UUIDs are taken out before looking for cards.
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}").unwrap()
});

/// Matches wherever one of the patterns above could (each one loosened: no word
/// boundaries, no checks), in one pass: most values hold nothing personal, and the scan
/// reads every value, so those are done after one scan of their text.
static ANY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i:[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})",
        r"|\+[1-9][0-9 ().-]{6,20}[0-9]",
        r"|[spr]k_live_|cus_[A-Za-z0-9]{8}|ghp_|github_pat_|xox[abprs]-|AKIA[0-9A-Z]{16}|-----BEGIN ",
        r"|[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
        r"|[0-9]{13}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}|3[47][0-9]{2}[ -][0-9]{6}",
    ))
    .unwrap()
});

/// The kinds of PII a value contains.
pub(crate) fn kinds_in_value(value: &str, cfg: &AnonymizeConfig) -> Vec<&'static str> {
    kinds_starting_in(value, 0..value.len(), cfg)
}

/// The kinds of PII whose matches start within the byte range `starts` of `text` (the rest
/// of `text` is context: see [`super::rows::Windows`]).
pub(super) fn kinds_starting_in(
    text: &str,
    starts: Range<usize>,
    cfg: &AnonymizeConfig,
) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    if !ANY.is_match(text) {
        return kinds;
    }
    let owned = |start: usize| starts.contains(&start);
    if EMAIL.find_iter(text).any(|m| {
        let email = m.as_str();
        // Built only for a match: the scan classifies every value, most hold no email.
        let masked = format!("@{}", cfg.email_domain.to_lowercase());
        owned(m.start()) && email != cfg.admin_email && !email.to_lowercase().ends_with(&masked)
    }) {
        kinds.push("email");
    }
    if PHONE.captures_iter(text).any(|c| {
        let number = c.get(1).expect("the regex has one group");
        let digits = number.as_str().chars().filter(char::is_ascii_digit).count();
        owned(number.start()) && (8..=15).contains(&digits)
    }) {
        kinds.push("phone");
    }
    if TOKEN.find_iter(text).any(|m| owned(m.start())) {
        kinds.push("token");
    }
    if IBAN
        .find_iter(text)
        .any(|m| owned(m.start()) && iban_valid(m.as_str()))
    {
        kinds.push("iban");
    }
    // Blanked to the same length, so offsets stay those of `text`.
    let without_uuids = UUID.replace_all(text, |c: &regex::Captures| " ".repeat(c[0].len()));
    if CARD
        .find_iter(&without_uuids)
        .any(|m| owned(m.start()) && card_prefix(m.as_str()) && luhn_valid(m.as_str()))
    {
        kinds.push("card");
    }
    kinds
}

/// ISO 13616 mod-97 check.
fn iban_valid(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut remainder = 0u32;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        for digit in value.to_string().chars() {
            remainder = (remainder * 10 + digit.to_digit(10).unwrap_or(0)) % 97;
        }
    }
    remainder == 1
}

/// Whether the number starts as the card networks' numbers do (Visa, Mastercard, Amex,
/// Discover, JCB, Diners, UnionPay).
fn card_prefix(text: &str) -> bool {
    let digits: String = text.chars().filter(char::is_ascii_digit).take(4).collect();
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    digits.starts_with('4')
        || (51..=55).contains(&prefix(2))
        || (2221..=2720).contains(&prefix(4))
        || [34, 37, 36, 38, 35, 62, 65].contains(&prefix(2))
        || prefix(4) == 6011
        || (300..=305).contains(&prefix(3))
        || (644..=649).contains(&prefix(3))
}

fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let double = d * 2;
                if double > 9 { double - 9 } else { double }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{OnUnmaskedPii, PasswordHash, Secret};

    pub(in crate::verify::scan) fn cfg() -> AnonymizeConfig {
        AnonymizeConfig {
            prod_admin_email: Some("boss@example.com".into()),
            admin_email: "admin@staging.example.com".into(),
            admin_password: Secret::from("password"),
            password_hash: PasswordHash::Unusable,
            email_domain: "staging.invalid".into(),
            on_unmasked_pii: OnUnmaskedPii::Warn,
            extra_sql: vec![],
            column: vec![],
            table: vec![],
            mask_key_file: None,
            unclassified: Default::default(),
            large_objects: Default::default(),
            accounts: serde_json::from_value(serde_json::json!({
                "table": "users", "id": "id", "email": "email", "password": "password_digest",
            }))
            .unwrap(),
            rules: Default::default(),
        }
    }

    #[test]
    fn values_are_classified() {
        let c = cfg();
        let cases: &[(&str, &[&str])] = &[
            ("write to jane.doe@example.com today", &["email"]),
            (
                "anon_abc@staging.invalid and admin@staging.example.com",
                &[],
            ),
            ("call +39 06 1234 5678", &["phone"]),
            (
                "{\"key\": \"sk_live_4eC39HqLyjWDarjtT1zdp7dc\"}",
                &["token"],
            ),
            ("customer cus_NffrFeUfNV2Hib", &["token"]),
            ("IBAN DE89 3704 0044 0532 0130 00", &["iban"]),
            ("card 4111 1111 1111 1111", &["card"]),
            ("card 4111-1111-1111-1111", &["card"]),
            ("4111111111111111", &["card"]),
            ("amex 3782 822463 10005", &["card"]),
            ("card 4111 1111 1111 1112", &[]),
            // Luhn-valid digits that are no card: inside UUIDs, mixed separators, no network.
            ("id 32580007-6623-4424-8680-400175019672", &[]),
            ("ref 4111-1111 1111-1111", &[]),
            ("order 2000 0000 0000 0006", &[]),
            ("media/3f2b8c1e-1d2a-4b5c-9e8f-0a1b2c3d4e5f/file.png", &[]),
            ("Plain product description 12345", &[]),
            ("{\"seed\": 1234567, \"steps\": 30}", &[]),
        ];
        for (value, expected) in cases {
            assert_eq!(kinds_in_value(value, &c), *expected, "{value}");
        }
    }

    #[test]
    fn column_names_are_classified() {
        assert_eq!(kind_by_name("billing_email"), Some("email"));
        assert_eq!(kind_by_name("contact_phone"), Some("phone"));
        assert_eq!(kind_by_name("stripe_api_key"), Some("secret"));
        assert_eq!(kind_by_name("reset_token"), Some("secret"));
        assert_eq!(kind_by_name("discard_reason"), None);
        assert_eq!(kind_by_name("description"), None);
    }
}
