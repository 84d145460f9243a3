//! The masking rules: `[[anonymize.column]]` and `[[anonymize.table]]` parsed and validated
//! when the config loads (so `check`, every command and the daemon's reload refuse the same
//! ones, each error naming its key), plus the rules `[anonymize.accounts]` makes for the
//! application's users table, which every run applies. The mask kinds are data here, by
//! their config names; `mask` applies them.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoStaticStr, VariantNames};

use super::units::de_table;
use super::{ConfigError, key_error};
use crate::table::TableName;

/// How one column's values are masked. The kinds' config names are the variants' names in
/// lower case (strum), parsed by [`Mask::parse`] and shown by `Display` from there alone.
#[derive(Debug, Clone, PartialEq, Eq, EnumString, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "lowercase")]
pub enum Mask {
    /// Classified as not personal: passed through unchanged.
    Keep,
    Null,
    /// A constant.
    Redact(String),
    /// `anon_<16 hex digits>@<anonymize.email_domain>`.
    Email,
    /// A made-up "First Last".
    Name,
    /// Every character but a phone number's punctuation replaced by a digit.
    Phone,
    /// A known provider's prefix (`cus_`, `sk_live_`) and the length kept, the rest replaced.
    Token,
    /// 64 hex digits.
    Hash,
    Uuid,
    /// A same-length placeholder.
    Text,
    /// A well-formed bcrypt string no password matches, random per row (equal production
    /// hashes, shared passwords, stay unrecognisable); it starts with the key's marker salt,
    /// which is how verification knows no production hash was kept.
    Password,
    /// Per-path masks inside a json/jsonb value, and one for the rest of its strings and
    /// numbers (none keeps them).
    Json(JsonMask),
}

/// A `json` mask: a mask per dotted path of keys (arrays on the way: every element), and
/// `rest`, the mask of every string and number under no listed path (`None`: kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonMask {
    pub paths: Vec<(Vec<String>, Mask)>,
    pub rest: Option<Box<Mask>>,
}

impl Mask {
    /// The kinds by their config names (`json` takes `paths`, `redact` a `value`).
    pub fn parse(kind: &str, value: Option<&str>) -> Result<Mask, String> {
        // strum's `FromStr` gives a variant's data its default: `redact`'s constant is set here.
        let mask: Mask = kind.parse().map_err(|_| {
            format!(
                "unknown mask {kind:?}; one of {}",
                Mask::VARIANTS.join(", ")
            )
        })?;
        Ok(match mask {
            Mask::Redact(_) => Mask::Redact(value.unwrap_or("redacted").to_owned()),
            mask => mask,
        })
    }
}

/// The config's name, and a json mask's paths and rest:
/// `json(contact.email = email; rest = text)`.
impl std::fmt::Display for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mask::Json(json) => {
                let paths: Vec<String> = json
                    .paths
                    .iter()
                    .map(|(path, mask)| format!("{} = {mask}", path.join(".")))
                    .collect();
                write!(f, "json({}", paths.join(", "))?;
                if let Some(rest) = &json.rest {
                    write!(f, "; rest = {rest}")?;
                }
                f.write_str(")")
            }
            kind => f.write_str(kind.into()),
        }
    }
}

/// The placeholder name every other account gets, and the staging admin's.
pub const ANONYMIZED_NAME: &str = "Anonymized User";
pub const ADMIN_NAME: &str = "Staging Admin";

/// `[anonymize.accounts]`: the application's users table and the columns the admin's re-key
/// and the account checks read. Its email, password, name and superuser columns are masked
/// (rules of their own); the id and active columns are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    #[serde(deserialize_with = "de_table")]
    pub table: TableName,
    /// Kept for the production admin's row: its id owns everything.
    pub id: String,
    pub email: String,
    /// The password hash.
    pub password: String,
    pub name: Option<String>,
    /// A boolean column: the admin's is true, every other account's false.
    pub superuser: Option<String>,
    /// A boolean column: an inactive account cannot log in.
    pub active: Option<String>,
}

impl AccountsConfig {
    /// The configured columns, by their key: the required ones, then those set.
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        let optional = [
            ("name", &self.name),
            ("superuser", &self.superuser),
            ("active", &self.active),
        ];
        [
            ("id", &self.id),
            ("email", &self.email),
            ("password", &self.password),
        ]
        .into_iter()
        .map(|(key, column)| (key, column.as_str()))
        .chain(
            optional
                .into_iter()
                .filter_map(|(key, column)| Some((key, column.as_deref()?))),
        )
        .collect()
    }
}

/// `[[anonymize.column]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    pub table: String,
    pub column: String,
    pub mask: String,
    /// `redact`'s constant.
    pub value: Option<String>,
    /// `json`'s masks by dotted path: `{ "contact.email" = "email" }`.
    #[serde(default)]
    pub paths: BTreeMap<String, String>,
    /// `json`'s mask for every other string and number; unset keeps them.
    pub rest: Option<String>,
}

/// `[[anonymize.table]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRule {
    pub table: String,
    pub mode: TableMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableMode {
    /// Restored without rows (sessions, tokens, audit trails, mail queues).
    Empty,
    /// Every column classified as not personal, unless a column rule says otherwise.
    Keep,
}

/// `anonymize.unclassified`: what a personal-looking column without a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unclassified {
    /// The run fails before any row is loaded, naming every such column.
    #[default]
    Fail,
    /// A warning names them; their values are kept.
    Warn,
}

/// The runbook's steps for the accounts as rules: reserved-domain emails, a placeholder
/// name, an unusable password hash and no superuser flag; the id is kept (it is how the
/// admin's row is found again). The admin's row is handled apart (see `mask::Admin`).
fn account_rules(a: &AccountsConfig) -> Vec<(&str, Mask)> {
    let optional = [
        (&a.name, Mask::Redact(ANONYMIZED_NAME.into())),
        (&a.superuser, Mask::Redact("f".into())),
    ];
    [
        (a.id.as_str(), Mask::Keep),
        (a.email.as_str(), Mask::Email),
        (a.password.as_str(), Mask::Password),
    ]
    .into_iter()
    .chain(
        optional
            .into_iter()
            .filter_map(|(column, mask)| Some((column.as_deref()?, mask))),
    )
    .collect()
}

/// Where a column's rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `[anonymize.accounts]`, whose columns every run masks.
    Accounts,
    /// An `[[anonymize.column]]` rule.
    Column,
    /// An `[[anonymize.table]]` rule (`mode = "keep"`).
    Table,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Accounts => "anonymize.accounts",
            Origin::Column => "column rule",
            Origin::Table => "table rule",
        })
    }
}

/// What the rules make of one column of the dump: the run's unclassified check, the
/// report's kept columns, `plan` and `rules` all classify through [`Rules::classify`].
#[derive(Debug, Clone, PartialEq)]
pub enum Class<'a> {
    /// Its table is restored without rows.
    Emptied,
    /// Its mask (`keep` for a personal-looking column classified as not personal).
    Ruled(&'a Mask, Origin),
    /// Its type can hold personal data and no rule names it.
    Unclassified,
    /// Its type holds nothing personal (numbers, dates, enums, ...) and it is not masked.
    NotPersonal,
}

/// Every rule, by table.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub columns: HashMap<TableName, BTreeMap<String, Mask>>,
    pub tables: HashMap<TableName, TableMode>,
    pub unclassified: Unclassified,
    /// The columns whose rules `[anonymize.accounts]` makes.
    accounts: HashSet<(TableName, String)>,
}

impl Rules {
    /// The rules `[anonymize.accounts]`, `[[anonymize.table]]`, `[[anonymize.column]]` and
    /// `anonymize.unclassified` make; an error names the config key at fault.
    /// [`super::Config::load`] keeps them in `anonymize.rules`: read them there.
    pub fn from_config(
        accounts_config: &AccountsConfig,
        table_rules: &[TableRule],
        column_rules: &[ColumnRule],
        unclassified: Unclassified,
    ) -> Result<Rules, ConfigError> {
        let mut rules = Rules {
            unclassified,
            ..Rules::default()
        };
        let accounts = &accounts_config.table;
        for (column, mask) in account_rules(accounts_config) {
            rules
                .columns
                .entry(accounts.clone())
                .or_default()
                .insert(column.to_owned(), mask);
            rules.accounts.insert((accounts.clone(), column.to_owned()));
        }
        for (i, rule) in table_rules.iter().enumerate() {
            let key = |field: &str| format!("anonymize.table[{i}].{field}");
            let table = TableName::parse(&rule.table).map_err(|m| key_error(key("table"), m))?;
            if rule.mode == TableMode::Empty && table == *accounts {
                return Err(key_error(
                    key("mode"),
                    format!(
                        "{table} cannot be emptied: it is anonymize.accounts.table, whose rows \
                         the admin and the account checks need"
                    ),
                ));
            }
            if rules.tables.insert(table.clone(), rule.mode).is_some() {
                return Err(key_error(
                    key("table"),
                    format!("{table} has a table rule already"),
                ));
            }
        }
        for (i, rule) in column_rules.iter().enumerate() {
            let key = |field: &str| format!("anonymize.column[{i}].{field}");
            let table = TableName::parse(&rule.table).map_err(|m| key_error(key("table"), m))?;
            let mask = column_mask(rule).map_err(|(field, m)| key_error(key(field), m))?;
            if rules.tables.get(&table) == Some(&TableMode::Empty) {
                return Err(key_error(
                    key("table"),
                    format!("{table} is emptied (anonymize.table), so its columns need no rules"),
                ));
            }
            let columns = rules.columns.entry(table.clone()).or_default();
            if columns.contains_key(&rule.column) {
                let why = if rules
                    .accounts
                    .contains(&(table.clone(), rule.column.clone()))
                {
                    "is a column of anonymize.accounts, which masks it"
                } else {
                    "has a rule already"
                };
                return Err(key_error(
                    key("column"),
                    format!("{table}.{} {why}", rule.column),
                ));
            }
            columns.insert(rule.column.clone(), mask);
        }
        Ok(rules)
    }

    /// The mask of `column` in a table whose lineage is `tables` (the table, then the tables
    /// whose rules it follows, nearest first: see `mask::TableShape::lineage`): the nearest
    /// table's column rule or `keep` table rule, so a partition's or a child's own rule wins
    /// over its parent's.
    pub fn mask<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a TableName>,
        column: &str,
    ) -> Option<&Mask> {
        self.rule(tables, column).map(|(mask, _)| mask)
    }

    /// That mask and where it comes from.
    pub fn rule<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a TableName>,
        column: &str,
    ) -> Option<(&Mask, Origin)> {
        tables.into_iter().find_map(|table| {
            match self.columns.get(table).and_then(|c| c.get(column)) {
                Some(mask) => {
                    let accounts = self.accounts.contains(&(table.clone(), column.to_owned()));
                    let origin = if accounts {
                        Origin::Accounts
                    } else {
                        Origin::Column
                    };
                    Some((mask, origin))
                }
                None if self.tables.get(table) == Some(&TableMode::Keep) => {
                    Some((&Mask::Keep, Origin::Table))
                }
                None => None,
            }
        })
    }

    /// How `column` of a table whose lineage is `tables` is classified; `personal_type`: its
    /// type can hold personal data.
    pub fn classify<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a TableName> + Clone,
        column: &str,
        personal_type: bool,
    ) -> Class<'_> {
        if self.table_mode(tables.clone()) == Some(TableMode::Empty) {
            return Class::Emptied;
        }
        match self.rule(tables, column) {
            Some((Mask::Keep, _)) if !personal_type => Class::NotPersonal,
            Some((mask, origin)) => Class::Ruled(mask, origin),
            None if personal_type => Class::Unclassified,
            None => Class::NotPersonal,
        }
    }

    /// The table rule of the nearest table of `tables` (a lineage) that has one.
    pub fn table_mode<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a TableName>,
    ) -> Option<TableMode> {
        tables
            .into_iter()
            .find_map(|table| self.tables.get(table).copied())
    }
}

/// The rule's mask; the error names the field at fault.
fn column_mask(rule: &ColumnRule) -> Result<Mask, (&'static str, String)> {
    if rule.column.is_empty() {
        return Err(("column", "is empty".into()));
    }
    let mask = Mask::parse(&rule.mask, rule.value.as_deref()).map_err(|m| ("mask", m))?;
    if rule.value.is_some() && !matches!(mask, Mask::Redact(_)) {
        return Err(("value", "only a \"redact\" mask takes a value".into()));
    }
    if !matches!(mask, Mask::Json(_)) {
        if !rule.paths.is_empty() {
            return Err(("paths", "only a \"json\" mask takes paths".into()));
        }
        if rule.rest.is_some() {
            return Err(("rest", "only a \"json\" mask takes rest".into()));
        }
        return Ok(mask);
    }
    if rule.paths.is_empty() && rule.rest.is_none() {
        return Err((
            "paths",
            "a \"json\" mask needs paths = { \"a.b\" = \"email\" }, rest = \"text\" or both".into(),
        ));
    }
    let inside = |field: &'static str, what: &str, kind: &str| {
        let inner = Mask::parse(kind, None).map_err(|m| (field, format!("{what}{m}")))?;
        match inner {
            Mask::Json(_) => Err((field, format!("{what}{kind:?} does not apply inside JSON"))),
            inner => Ok(inner),
        }
    };
    let mut paths: Vec<(Vec<String>, Mask)> = Vec::new();
    for (path, kind) in &rule.paths {
        let inner = inside("paths", &format!("{path:?}: "), kind)?;
        if inner == Mask::Keep {
            return Err((
                "paths",
                format!("{path:?}: \"keep\" does not apply inside JSON"),
            ));
        }
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(("paths", format!("{path:?} is not a dotted path of keys")));
        }
        // One mask per value: a path inside another's would mask its values twice.
        if let Some((other, _)) = paths
            .iter()
            .find(|(p, _)| p.starts_with(&parts) || parts.starts_with(p))
        {
            return Err((
                "paths",
                format!("{path:?} and {:?} overlap", other.join(".")),
            ));
        }
        paths.push((parts, inner));
    }
    let rest = match rule
        .rest
        .as_deref()
        .map(|kind| inside("rest", "", kind))
        .transpose()?
    {
        None | Some(Mask::Keep) => None,
        Some(mask) => Some(Box::new(mask)),
    };
    Ok(Mask::Json(JsonMask { paths, rest }))
}

#[cfg(test)]
mod tests;
