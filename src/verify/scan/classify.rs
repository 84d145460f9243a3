//! What a value looks like it holds: emails, phone numbers, API tokens, password hashes,
//! IBANs, card numbers (with a valid Luhn digit), IP addresses (valid ones, not version numbers), postal
//! addresses (a house number beside a street word) and people's names ([`names`]). Emails in
//! the masked domain and the staging admin's are not personal. The scan asks which kinds a
//! text holds anywhere; `rules` also asks which kind a value is, alone.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use super::column_names::{ADDRESS, CARD, EMAIL, IBAN, IP, NAME, PASSWORD, PHONE};
use super::names;
use crate::config::AnonymizeConfig;

/// API tokens and payment ids by their vendors' prefixes (Stripe's, GitHub's, Slack's, AWS').
pub(crate) const TOKEN: &str = "token";

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}").unwrap()
});
static PHONE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\w+])(\+[1-9][0-9 ().-]{6,20}[0-9])").unwrap());
/// A phone number without its country code, as a value of its own: North American
/// (`(555) 010-1234`) or behind a national trunk 0 (`020 7946 0958`, `06 12 34 56 78`).
static NATIONAL_PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\(?[2-9][0-9]{2}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}|\(?0[0-9]{1,4}\)?(?:[ ./-]?[0-9]{2,4}){2,4})$")
        .unwrap()
});
static TOKEN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:[spr]k_live_[A-Za-z0-9]{8,}|cus_[A-Za-z0-9]{8,}|(?:pm|pi|ch|card|seti|acct)_[A-Za-z0-9]{14,}|ghp_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    )
    .unwrap()
});
/// Password hashes in the formats applications store: bcrypt, argon2, Django's PBKDF2, crypt(3)'s
/// MD5 and SHA-2.
static PASSWORD_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}|\$argon2(?:id|i|d)\$[^\s$]*\$[^\s$]*\$[^\s$]+\$[A-Za-z0-9+/]+|pbkdf2_sha(?:1|256)\$[0-9]+\$[^\s$]+\$[A-Za-z0-9+/=]+|\$[156]\$[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86}",
    )
    .unwrap()
});
static IBAN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b").unwrap()
});
/// Card numbers as they are written: one run of digits, or groups of four (Amex 4-6-5)
/// separated all by spaces or all by dashes.
static CARD_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:[0-9]{13,19}|[0-9]{4}(?: [0-9]{4}){2} [0-9]{1,7}|[0-9]{4}(?:-[0-9]{4}){2}-[0-9]{1,7}|3[47][0-9]{2} [0-9]{6} [0-9]{5}|3[47][0-9]{2}-[0-9]{6}-[0-9]{5})\b",
    )
    .unwrap()
});
/// Dotted quads; what borders them is checked apart ([`ipv4`]).
static IPV4_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}").unwrap());
/// Runs of hex digits and colons that may be an IPv6 address ([`ipv6`] parses them).
static IPV6_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?::[0-9]{1,3}(?:\.[0-9]{1,3}){3})?")
        .unwrap()
});
/// Street words that follow the street's name (`221B Baker Street`) or come first
/// (`12 rue de la Paix`), and the endings of street names written before their number
/// (`Hauptstraße 5`, `Kerkstraat 12`, `Via Roma 3`); a US `City, ST 12345` line.
static ADDRESS_RE: LazyLock<Regex> = LazyLock::new(|| {
    let after_name = "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|\
        place|pl|terrace|way|parkway|pkwy|highway|hwy|square|sq|crescent|close|mews|gardens|grove";
    let before_name = "rue|avenue|av|boulevard|bd|chemin|allée|impasse|quai|via|viale|piazza|\
        corso|calle|avenida|rua|carrer|paseo|plaza|ulica|ul\\.";
    let endings = "straße|strasse|str\\.|weg|gasse|platz|allee|damm|ufer|straat|laan|gracht|\
        plein|vej|gade|gatan|gata|veien";
    let states = "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|\
        MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY";
    // Capitalised (`Street`, `ST`) after a name: "5 Very close" is no address.
    let after_name: Vec<String> = after_name
        .split('|')
        .flat_map(|w| [w[..1].to_uppercase() + &w[1..], w.to_uppercase()])
        .collect();
    let after_name = after_name.join("|");
    let number = "[0-9]{1,5}[A-Za-z]?";
    let name = r"\p{Lu}[\p{L}'.-]*";
    Regex::new(&format!(
        r"(?:^|[^\w])({number},? +(?:{name} +){{1,4}}(?:{after_name})\.?|{number},? +(?i:{before_name}) +(?:[\p{{L}}'.-]+ +){{0,3}}{name}|{name}(?i:{endings})(?: +{name})? +{number}|(?i:{before_name}) +(?:[\p{{L}}'.-]+ +){{0,3}}{name},? +{number}|{name}(?: {name}){{0,2}}, (?:{states}) [0-9]{{5}}(?:-[0-9]{{4}})?)(?:[^\w]|$)"
    ))
    .unwrap()
});

/// The kinds a regex finds, in [`PREFILTER`]'s order.
const FOUND_BY_REGEX: [&str; 9] = [EMAIL, PHONE, TOKEN, PASSWORD, IBAN, CARD, IP, IP, ADDRESS];

/// For each kind of [`FOUND_BY_REGEX`], a pattern matching wherever it could (loosened: no
/// word boundaries, no checks), all run in one pass: most values hold nothing personal,
/// and the scan reads every value, so those are done after one scan of their text; the
/// others are checked for the kinds whose pattern matched only.
static PREFILTER: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new([
        r"(?i:[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})",
        r"\+[1-9][0-9 ().-]{6,20}[0-9]",
        r"[spr]k_live_|cus_[A-Za-z0-9]{8}|(?:pm|pi|ch|card|seti|acct)_[A-Za-z0-9]{14}|ghp_|github_pat_|xox[abprs]-|AKIA[0-9A-Z]{16}|-----BEGIN ",
        r"\$2[aby]?\$[0-9]{2}\$|\$argon2|pbkdf2_sha|\$[156]\$",
        r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
        r"[0-9]{13}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}|3[47][0-9]{2}[ -][0-9]{6}",
        r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
        r"(?i)[0-9a-f]:[0-9a-f]{0,4}:",
        ADDRESS_RE.as_str(),
    ])
    .unwrap()
});

/// A UUID's digits can pass the Luhn check: UUIDs are taken out before looking for cards.
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}").unwrap()
});

/// The personal values the regexes find in `text`, by kind, with their byte ranges.
fn found(text: &str, cfg: &AnonymizeConfig) -> Vec<(&'static str, Range<usize>)> {
    let mut found = Vec::new();
    for at in PREFILTER.matches(text).iter() {
        let kind = FOUND_BY_REGEX[at];
        let mut add = |range: Range<usize>| found.push((kind, range));
        match at {
            0 => {
                // Built only for a match: most values hold no email.
                let masked = format!("@{}", cfg.email_domain.to_lowercase());
                EMAIL_RE
                    .find_iter(text)
                    .filter(|m| {
                        let email = m.as_str();
                        email != cfg.admin_email && !email.to_lowercase().ends_with(&masked)
                    })
                    .for_each(|m| add(m.range()));
            }
            1 => PHONE_RE
                .captures_iter(text)
                .map(|c| c.get(1).expect("the regex has one group"))
                .filter(|m| (8..=15).contains(&digits(m.as_str())))
                .for_each(|m| add(m.range())),
            2 => TOKEN_RE.find_iter(text).for_each(|m| add(m.range())),
            3 => PASSWORD_RE.find_iter(text).for_each(|m| add(m.range())),
            4 => IBAN_RE
                .find_iter(text)
                .filter(|m| iban_valid(m.as_str()))
                .for_each(|m| add(m.range())),
            5 => {
                // Blanked to the same length, so offsets stay those of `text`.
                let without_uuids =
                    UUID.replace_all(text, |c: &regex::Captures| " ".repeat(c[0].len()));
                CARD_RE
                    .find_iter(&without_uuids)
                    .filter(|m| card_prefix(m.as_str()) && luhn_valid(m.as_str()))
                    .for_each(|m| add(m.range()));
            }
            6 => IPV4_RE
                .find_iter(text)
                .filter(|m| ipv4(text, m.range()))
                .for_each(|m| add(m.range())),
            7 => IPV6_RE
                .find_iter(text)
                .filter(|m| ipv6(text, m.range()))
                .for_each(|m| add(m.range())),
            _ => ADDRESS_RE
                .captures_iter(text)
                .map(|c| c.get(1).expect("the regex has one group"))
                .for_each(|m| add(m.range())),
        }
    }
    found
}

fn digits(text: &str) -> usize {
    text.chars().filter(char::is_ascii_digit).count()
}

/// Whether `text[range]`, a dotted quad, is a host's IPv4 address: valid, not part of a
/// longer dotted run or a word (`v1.2.3.4`, `1.3.6.1.4.1`), not a version number (every part
/// one digit), not a network's or broadcast address, not loopback or unspecified.
fn ipv4(text: &str, range: Range<usize>) -> bool {
    let bytes = text.as_bytes();
    let before = range.start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(range.end).copied();
    let after_dot_digit =
        after == Some(b'.') && bytes.get(range.end + 1).is_some_and(u8::is_ascii_digit);
    if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        || after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        || after_dot_digit
    {
        return false;
    }
    let parts: Vec<&str> = text[range.clone()].split('.').collect();
    if parts.iter().any(|p| p.len() > 1 && p.starts_with('0')) || parts.iter().all(|p| p.len() == 1)
    {
        return false;
    }
    match text[range].parse::<Ipv4Addr>() {
        Ok(ip) => {
            let [first, .., last] = ip.octets();
            !(ip.is_loopback() || first == 0 || last == 0 || last == 255)
        }
        Err(_) => false,
    }
}

/// Whether `text[range]` is an IPv6 address with at least two groups of digits written (not
/// `::1`, nor a cast such as `'x'::date`), on its own (no word or colon beside it).
fn ipv6(text: &str, range: Range<usize>) -> bool {
    let bytes = text.as_bytes();
    let alone =
        |b: Option<&u8>| !b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b':' || *b == b'.');
    let candidate = &text[range.clone()];
    alone(range.start.checked_sub(1).map(|i| &bytes[i]))
        && alone(bytes.get(range.end))
        && candidate.split(':').filter(|g| !g.is_empty()).count() >= 2
        && candidate
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// The kinds of PII a value contains.
pub(crate) fn kinds_in_value(value: &str, cfg: &AnonymizeConfig) -> Vec<&'static str> {
    kinds_starting_in(value, 0..value.len(), cfg)
}

/// The kinds of PII whose matches start within the byte range `starts` of `text` (the rest
/// of `text` is context: see [`super::rows::Windows`]), in a fixed order.
pub(super) fn kinds_starting_in(
    text: &str,
    starts: Range<usize>,
    cfg: &AnonymizeConfig,
) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = found(text, cfg)
        .into_iter()
        .filter(|(_, range)| starts.contains(&range.start))
        .map(|(kind, _)| kind)
        .collect();
    if names::holds_name(text, starts) {
        kinds.push(NAME);
    }
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// The kind `value` is, alone: a name, an email, a list of IP addresses, an address line...
/// `None` when it is nothing personal, or more than one thing (free text).
pub(crate) fn value_is(value: &str, cfg: &AnonymizeConfig) -> Option<&'static str> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if names::is_name(value) {
        return Some(NAME);
    }
    let found = found(value, cfg);
    let Some(&(kind, _)) = found.first() else {
        let phone = NATIONAL_PHONE.is_match(value) && (9..=12).contains(&digits(value));
        return phone.then_some(PHONE);
    };
    if found.iter().any(|(k, _)| *k != kind) {
        return None;
    }
    // An address line may go on with a town and a postcode; anything else is alone when
    // every letter and digit of the value is in one of its matches.
    let alone = if kind == ADDRESS {
        value.len() <= 120
    } else {
        value
            .char_indices()
            .all(|(i, c)| !c.is_alphanumeric() || found.iter().any(|(_, range)| range.contains(&i)))
    };
    alone.then_some(kind)
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
            extra_sql_search_path: vec!["public".into()],
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
            ("paid with pm_1NxYzA2eZvKYlo2C8hZ3kQ", &["token"]),
            (
                "$2b$12$KIXQJ1bQ8ZpvVh5YnYJrUe3ZQ0Fq9xGzW7oU1aH2dD3eE4fF5gG6h",
                &["password"],
            ),
            (
                "pbkdf2_sha256$720000$c2FsdHNhbHQ$aGFzaGhhc2g=",
                &["password"],
            ),
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
    fn ip_addresses_postal_addresses_and_names_in_text() {
        let c = cfg();
        let cases: &[(&str, &[&str])] = &[
            ("login from 192.168.0.1 at noon", &["ip"]),
            ("{\"ip\": \"203.0.113.54\"}", &["ip"]),
            ("client 2001:db8::8a2e:370:7334 connected", &["ip"]),
            ("fe80::1ff:fe23:4567:890a", &["ip"]),
            // Versions, OIDs, networks, loopback, casts and times are no host's address.
            ("upgraded to 1.2.3.4 today", &[]),
            ("v10.2.3.40", &[]),
            ("oid 1.3.6.1.4.1", &[]),
            ("allow 10.0.0.0/8 and 192.168.1.255", &[]),
            ("127.0.0.1 and ::1", &[]),
            ("SELECT 'x'::date, '12:30:45'::time", &[]),
            ("at 2024-01-01T12:30:45Z", &[]),
            ("999.1.1.1", &[]),
            // Postal addresses.
            ("ship to 221B Baker Street, London", &["address"]),
            ("12 Elm St.", &["address"]),
            ("Hauptstraße 5, 10115 Berlin", &["address"]),
            ("12 rue de la Paix", &["address"]),
            ("Via Roma 3", &["address"]),
            ("Springfield, IL 62704", &["address"]),
            ("5 Very close matches", &[]),
            ("Top 10 ways to save", &[]),
            ("Studio 54", &[]),
            // Names.
            ("note from Jane Doe", &["name"]),
            ("Jordan Brown leather", &[]),
            // Several kinds in one note.
            (
                "Jane Doe called from +44 20 7946 0958, reply to jane@example.org",
                &["email", "name", "phone"],
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(kinds_in_value(value, &c), *expected, "{value}");
        }
    }

    #[test]
    fn what_a_value_is_alone() {
        let c = cfg();
        let cases: &[(&str, Option<&str>)] = &[
            ("jane@example.org", Some("email")),
            (" jane@example.org, omar@example.org ", Some("email")),
            ("+44 20 7946 0958", Some("phone")),
            ("(555) 010-1234", Some("phone")),
            ("020 7946 0958", Some("phone")),
            ("06 12 34 56 78", Some("phone")),
            ("192.168.0.1", Some("ip")),
            ("203.0.113.5, 198.51.100.7", Some("ip")),
            ("Jane Doe", Some("name")),
            ("Jane", Some("name")),
            ("221B Baker Street, London NW1 6XE", Some("address")),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", Some("token")),
            (
                "$2a$12$KIXQJ1bQ8ZpvVh5YnYJrUe3ZQ0Fq9xGzW7oU1aH2dD3eE4fF5gG6h",
                Some("password"),
            ),
            // Not one thing alone: free text, dates, numbers, nothing personal.
            ("Jane Doe, jane@example.org", None),
            ("write to jane@example.org today", None),
            ("01/02/2024", None),
            ("2024-01-01", None),
            ("12345", None),
            ("Jordan", None),
            ("May", None),
            ("dark", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(value_is(value, &c), *expected, "{value:?}");
        }
    }
}
