//! Every error of a config file at once, each naming its key once: serde stops at the first
//! error, so [`deserialize`] records it, takes the offending key out of the tree (a bad
//! value) or puts a stand-in in (a missing key) and deserializes again, until the tree
//! deserializes or nothing more can be learnt; validation then runs on the result and adds
//! what it finds about the other keys.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::ConfigError;

type Table = config::Map<String, config::Value>;

/// The errors found so far, at most one per key: a key's first error stands, and hides later
/// ones about the same key or anything under it (a stand-in's value failing validation, a
/// missing section's keys).
#[derive(Debug, Default)]
pub(super) struct Errors {
    found: Vec<ConfigError>,
    covered: Vec<String>,
}

impl Errors {
    pub fn push(&mut self, key: impl Into<String>, message: impl std::fmt::Display) {
        let key = key.into();
        if self.covers(&key) {
            return;
        }
        self.covered.push(key.clone());
        self.found.push(ConfigError::Key {
            key,
            message: message.to_string(),
        });
    }

    /// Takes a single-key error (the masking rules') among the others.
    pub fn add(&mut self, error: ConfigError) {
        match error {
            ConfigError::Key { key, message } => self.push(key, message),
            other => self.found.push(other),
        }
    }

    /// Hides errors about `key` without recording one: another key already said what is
    /// wrong with it (`admin_password_file` for `admin_password`).
    pub fn cover(&mut self, key: impl Into<String>) {
        self.covered.push(key.into());
    }

    fn covers(&self, key: &str) -> bool {
        self.covered.iter().any(|k| {
            key == k
                || key
                    .strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }

    /// `value` when nothing was found; else the one error, or all of them.
    pub fn into_result<T>(mut self, value: Option<T>) -> Result<T, ConfigError> {
        match (self.found.len(), value) {
            (0, Some(value)) => Ok(value),
            (0, None) => Err(ConfigError::Key {
                key: "(top level)".into(),
                message: "the file could not be read as a configuration".into(),
            }),
            (1, _) => Err(self.found.remove(0)),
            _ => Err(ConfigError::Several(self.found)),
        }
    }
}

/// What stands in for a missing key while the rest is checked: text first (most required
/// keys are), a table when text is not what it takes.
const STAND_INS: [fn() -> config::ValueKind; 2] = [
    || config::ValueKind::String(String::new()),
    || config::ValueKind::Table(Table::new()),
];

/// Deserializes `tree`, recording every error in `errors` (keys as `show_key` spells them).
/// `None` when some error could not be stepped past; what it found is recorded all the same.
pub(super) fn deserialize<T: DeserializeOwned>(
    mut tree: Table,
    errors: &mut Errors,
    show_key: impl Fn(&str) -> String,
) -> Option<T> {
    // Each missing key filled in (its key, as shown) and how many stand-ins were tried.
    let mut stand_ins: Vec<(String, usize)> = Vec::new();
    // Each round removes a key or fills one in, so the tree's size bounds the rounds.
    for _ in 0..10_000 {
        let value = config::Value::new(None, config::ValueKind::Table(tree.clone()));
        let err = match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(value) => return Some(value),
            Err(err) => err,
        };
        let mut path: Vec<Segment> = err.path().iter().cloned().collect();
        let missing = missing_field(err.inner());
        if let Some(field) = &missing {
            path.push(Segment::Map { key: field.clone() });
        }
        let key = show_key(&err.path().to_string());
        let key = match (&missing, key.as_str()) {
            (Some(field), ".") => field.clone(),
            (Some(field), parent) => format!("{parent}.{field}"),
            (None, ".") => "(top level)".into(),
            (None, _) => key,
        };
        if let Some(tried) = stand_ins.iter_mut().find(|(k, _)| *k == key) {
            // The stand-in itself was refused (a missing `kind` takes neither): try the next
            // kind, or give up, with what was found so far recorded.
            let next = STAND_INS.get(tried.1)?;
            tried.1 += 1;
            *slot(&mut tree, &path)? = config::Value::new(None, next());
            continue;
        }
        match missing {
            Some(_) => {
                errors.push(key.clone(), "missing");
                let (parent, field) = parent_of(&mut tree, &path)?;
                parent.insert(field, config::Value::new(None, STAND_INS[0]()));
                stand_ins.push((key, 1));
            }
            None => {
                errors.push(key, show_key(&message(err.inner())));
                remove(&mut tree, &path)?;
            }
        }
    }
    None
}

/// The field a "missing field" error names (the config crate prefixes it with its parents:
/// `notify.webhook[0]kind`).
fn missing_field(err: &config::ConfigError) -> Option<String> {
    match err {
        config::ConfigError::NotFound(key) => Some(key.rsplit(['.', ']']).next()?.to_owned()),
        config::ConfigError::At { error, .. } => missing_field(error),
        _ => None,
    }
}

/// An error's message without the key the config crate appends to it (the key is shown once,
/// by the caller).
fn message(err: &config::ConfigError) -> String {
    match err {
        config::ConfigError::At { error, .. } => message(error),
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        other => other.to_string(),
    }
}

/// The table holding the last segment of `path`, and that key.
fn parent_of<'t>(tree: &'t mut Table, path: &[Segment]) -> Option<(&'t mut Table, String)> {
    let (Segment::Map { key }, parents) = path.split_last()? else {
        return None;
    };
    let parent = match parents {
        [] => tree,
        _ => match &mut slot(tree, parents)?.kind {
            config::ValueKind::Table(table) => table,
            _ => return None,
        },
    };
    Some((parent, key.clone()))
}

/// Takes the value at `path` out of `tree`: a key of a table or an item of a list.
fn remove(tree: &mut Table, path: &[Segment]) -> Option<()> {
    match path.split_last()? {
        (Segment::Seq { index }, parents) => match &mut slot(tree, parents)?.kind {
            config::ValueKind::Array(items) if *index < items.len() => {
                items.remove(*index);
                Some(())
            }
            _ => None,
        },
        _ => {
            let (parent, field) = parent_of(tree, path)?;
            parent.remove(&field).map(drop)
        }
    }
}

/// The value at `path` in `tree`.
fn slot<'t>(tree: &'t mut Table, path: &[Segment]) -> Option<&'t mut config::Value> {
    let (first, rest) = path.split_first()?;
    let Segment::Map { key } = first else {
        return None;
    };
    let mut value = tree.get_mut(key)?;
    for segment in rest {
        value = match (segment, &mut value.kind) {
            (Segment::Map { key }, config::ValueKind::Table(table)) => table.get_mut(key)?,
            (Segment::Seq { index }, config::ValueKind::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(value)
}
