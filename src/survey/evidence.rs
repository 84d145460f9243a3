//! What an unclassified column seems to hold: what its name says, and what its values show,
//! in counts (never a value): how many hold each kind of personal value, how many are one
//! such value alone, and in a json document, at which paths.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::AnonymizeConfig;
use crate::verify::scan::{kind_by_name, kinds_in_value, value_is};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// What the column's name says it holds (email, phone, name, address, ip, secret, ...).
    pub name: Option<&'static str>,
    /// Values read in the COPY data (the first `VALUE_PREFIX` bytes of each): not NULL, not
    /// empty.
    pub values: u64,
    /// Values holding each kind: email, phone, token, iban, card, ip, address, name.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Values that are one value of a kind and nothing else: an email, a name, an address
    /// line (a list of emails or IP addresses too).
    pub alone: BTreeMap<&'static str, u64>,
    /// In a json column: per dotted path of keys, the values holding each kind there (by
    /// their own shape, or by their key's name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

impl Evidence {
    /// One line: "name says email; 200 of 200 values hold email".
    pub fn describe(&self) -> String {
        let name = match self.name {
            Some(kind) => format!("name says {kind}"),
            None => "name says nothing".to_owned(),
        };
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, &n)| {
                let alone = self.alone.get(kind).copied().unwrap_or(0);
                let how = if alone == n {
                    String::new()
                } else if alone == 0 {
                    " in other text".to_owned()
                } else {
                    format!(" ({alone} alone)")
                };
                format!("{n} of {} values hold {kind}{how}", self.values)
            })
            .collect();
        let values = if kinds.is_empty() {
            format!("none of {} values looks personal", self.values)
        } else {
            kinds.join(", ")
        };
        let paths: Vec<String> = self
            .paths
            .iter()
            .flat_map(|(path, kinds)| kinds.iter().map(move |(k, n)| format!("{path}: {n} {k}")))
            .collect();
        if paths.is_empty() {
            format!("{name}; {values}")
        } else {
            format!("{name}; {values} ({})", paths.join(", "))
        }
    }

    /// Counts what one value (COPY-decoded) holds; a json column's value is parsed too, its
    /// keys read as column names under the column's (`json`, its name).
    pub(super) fn observe(&mut self, text: &str, json: Option<&str>, cfg: &AnonymizeConfig) {
        if text.trim().is_empty() {
            return;
        }
        self.values += 1;
        let (kinds, alone) = kinds_of(text, cfg);
        for kind in kinds {
            *self.kinds.entry(kind).or_default() += 1;
        }
        if let Some(kind) = alone {
            *self.alone.entry(kind).or_default() += 1;
        }
        if let Some(column) = json
            && let Ok(doc) = serde_json::from_str::<Value>(text)
        {
            self.walk(&doc, &mut Vec::new(), (column, None), cfg);
        }
    }

    /// Counts the kinds in `doc`'s strings and numbers by path. `above` is the key above
    /// (`doc`'s name, as a table's for its columns) and what its name says, which holds for
    /// what is under it unless a key of its own says otherwise. Arrays on the way are
    /// transparent, as they are to a json mask.
    fn walk<'a>(
        &mut self,
        doc: &'a Value,
        path: &mut Vec<&'a str>,
        above: (&str, Option<&'static str>),
        cfg: &AnonymizeConfig,
    ) {
        let (parent, says) = above;
        let mut count = |path: &[&str], kinds: Vec<&'static str>| {
            if !path.is_empty() && !kinds.is_empty() {
                let at = self.paths.entry(path.join(".")).or_default();
                for kind in kinds {
                    *at.entry(kind).or_default() += 1;
                }
            }
        };
        match doc {
            Value::Object(map) => {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                // A key with a dot cannot be written as a json mask's path.
                for (key, value) in map.iter().filter(|(k, _)| !k.contains('.')) {
                    path.push(key);
                    let key_says = kind_by_name(parent, key, &keys).or(says);
                    self.walk(value, path, (key, key_says), cfg);
                    path.pop();
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.walk(v, path, above, cfg)),
            Value::String(s) => {
                let (mut kinds, _) = kinds_of(s, cfg);
                kinds.extend(says.filter(|k| !kinds.contains(k)));
                count(path, kinds);
            }
            Value::Number(_) => count(path, says.into_iter().collect()),
            _ => {}
        }
    }

    /// Adds what `other` (more values of the same column) showed.
    pub(super) fn add(&mut self, other: Evidence) {
        self.values += other.values;
        for (kind, n) in other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
        for (kind, n) in other.alone {
            *self.alone.entry(kind).or_default() += n;
        }
        for (path, kinds) in other.paths {
            let at = self.paths.entry(path).or_default();
            for (kind, n) in kinds {
                *at.entry(kind).or_default() += n;
            }
        }
    }
}

/// The kinds `text` holds anywhere, and the kind it is alone (which it holds too: a single
/// name is no name in running text, but a name still).
fn kinds_of(text: &str, cfg: &AnonymizeConfig) -> (Vec<&'static str>, Option<&'static str>) {
    let mut kinds = kinds_in_value(text, cfg);
    let alone = value_is(text, cfg);
    if let Some(kind) = alone
        && !kinds.contains(&kind)
    {
        kinds.push(kind);
    }
    (kinds, alone)
}
