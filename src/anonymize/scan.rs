//! The scan for PII the rules missed, inside the anonymizing transaction: every text-like
//! column (text, varchar, char, json, jsonb, citext, domains and arrays of them) of every user
//! table and materialized view, except the columns the masking rules rewrote (`keep`
//! columns are scanned: that is where a wrong classification shows). A column is reported when
//! its name says PII (email, phone, token, ...) and it holds values the rules did not mask, or
//! when sampled values look like emails, phone numbers, API tokens, IBANs or card numbers.
//! Findings name table, column, kind and count, never a value.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;

use super::{AnonymizeError, sql_error};
use crate::config::AnonymizeConfig;
use crate::database::sql::quote_ident;
use crate::mask::Masked;
use crate::table::TableName;

/// Rows sampled per table.
const SAMPLE_ROWS: i64 = 500;
/// Pages sampled per table (TABLESAMPLE SYSTEM picks whole pages at random).
const SAMPLE_PAGES: f64 = 16.0;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub table: String,
    pub column: String,
    /// email, phone, token, iban, card, or for names: secret, password.
    pub kind: String,
    /// How it was found: "column name" (count = unmasked non-null values) or "sampled values"
    /// (count = matching values in the sample).
    pub by: String,
    pub count: u64,
}

/// One line naming every finding, for logs and errors.
pub fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{}.{}: {} {} ({})",
                f.table, f.column, f.count, f.kind, f.by
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct Table {
    name: TableName,
    pages: f64,
    columns: Vec<String>,
}

pub async fn run(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
) -> Result<Vec<Finding>, AnonymizeError> {
    let rows = tx
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text,
                    pg_relation_size(c.oid)::float8 / current_setting('block_size')::float8
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type base ON base.oid = t.typbasetype
             LEFT JOIN pg_type elem ON elem.oid = coalesce(base.typelem, t.typelem)
                  AND coalesce(base.typcategory, t.typcategory) = 'A'
             WHERE c.relkind IN ('r', 'm') AND a.attnum > 0 AND NOT a.attisdropped
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_(toast|temp)'
               AND (coalesce(base.typcategory, t.typcategory) = 'S'
                    OR coalesce(base.typname, t.typname) IN ('json', 'jsonb')
                    OR elem.typcategory = 'S' OR elem.typname IN ('json', 'jsonb'))
             ORDER BY 1, 2, a.attnum",
            &[],
        )
        .await
        .map_err(sql_error("listing text columns"))?;
    let mut tables: Vec<Table> = Vec::new();
    for row in rows {
        let (schema, table, column): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let name = TableName::new(&schema, &table);
        if masked
            .applied
            .iter()
            .any(|(t, c, _)| *t == name && *c == column)
        {
            continue;
        }
        match tables.last_mut() {
            Some(t) if t.name == name => t.columns.push(column),
            _ => tables.push(Table {
                name,
                pages: row.get(3),
                columns: vec![column],
            }),
        }
    }
    let masked_suffix = format!("%@{}", cfg.email_domain.to_lowercase());
    let mut findings = Vec::new();
    for table in &tables {
        let from = table.name.sql();
        for column in &table.columns {
            let Some(kind) = kind_by_name(column) else {
                continue;
            };
            let unmasked: i64 = tx
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {from} WHERE {col} IS NOT NULL
                         AND {col}::text <> '' AND lower({col}::text) NOT LIKE $1
                         AND {col}::text <> $2",
                        col = quote_ident(column)
                    ),
                    &[&masked_suffix, &cfg.admin_email],
                )
                .await
                .map_err(sql_error(&format!("scanning {}.{column}", table.name)))?
                .get(0);
            if unmasked > 0 {
                findings.push(Finding {
                    table: table.name.to_string(),
                    column: column.clone(),
                    kind: kind.into(),
                    by: "column name".into(),
                    count: unmasked as u64,
                });
            }
        }
        findings.extend(sample(tx, cfg, table, &from).await?);
    }
    Ok(findings)
}

/// Samples a few hundred rows spread over the table and matches their values.
async fn sample(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    table: &Table,
    from: &str,
) -> Result<Vec<Finding>, AnonymizeError> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}::text", quote_ident(c)))
        .collect();
    let percent = 100.0 * SAMPLE_PAGES / table.pages.max(1.0);
    let tablesample = if percent < 100.0 {
        format!(" TABLESAMPLE SYSTEM ({percent:.6})")
    } else {
        String::new()
    };
    let rows = tx
        .query(
            &format!(
                "SELECT {} FROM {from}{tablesample} LIMIT {SAMPLE_ROWS}",
                columns.join(", ")
            ),
            &[],
        )
        .await
        .map_err(sql_error(&format!("sampling {}", table.name)))?;
    let mut counts: BTreeMap<(usize, &'static str), u64> = BTreeMap::new();
    for row in &rows {
        for i in 0..columns.len() {
            let Some(value) = row.get::<_, Option<String>>(i) else {
                continue;
            };
            for kind in kinds_in_value(&value, cfg) {
                *counts.entry((i, kind)).or_insert(0) += 1;
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|((i, kind), count)| Finding {
            table: table.name.to_string(),
            column: table.columns[i].clone(),
            kind: kind.into(),
            by: "sampled values".into(),
            count,
        })
        .collect())
}

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

/// The kinds of PII a value contains.
pub(crate) fn kinds_in_value(value: &str, cfg: &AnonymizeConfig) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    let masked = format!("@{}", cfg.email_domain.to_lowercase());
    if EMAIL.find_iter(value).any(|m| {
        let email = m.as_str();
        email != cfg.admin_email && !email.to_lowercase().ends_with(&masked)
    }) {
        kinds.push("email");
    }
    if PHONE.captures_iter(value).any(|c| {
        let digits = c[1].chars().filter(char::is_ascii_digit).count();
        (8..=15).contains(&digits)
    }) {
        kinds.push("phone");
    }
    if TOKEN.is_match(value) {
        kinds.push("token");
    }
    if IBAN.find_iter(value).any(|m| iban_valid(m.as_str())) {
        kinds.push("iban");
    }
    let without_uuids = UUID.replace_all(value, " ");
    if CARD
        .find_iter(&without_uuids)
        .any(|m| card_prefix(m.as_str()) && luhn_valid(m.as_str()))
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
mod tests {
    use super::*;
    use crate::config::{OnUnmaskedPii, PasswordHash, Secret};

    fn cfg() -> AnonymizeConfig {
        AnonymizeConfig {
            prod_admin_email: "info@shootify.io".into(),
            admin_email: "admin@staging.example.com".into(),
            admin_password: Secret::new("password"),
            password_hash: PasswordHash::Unusable,
            email_domain: "staging.invalid".into(),
            on_unmasked_pii: OnUnmaskedPii::Warn,
            extra_sql: vec![],
            column: vec![],
            table: vec![],
            mask_key_file: None,
            unclassified: Default::default(),
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
