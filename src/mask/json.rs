//! How a `json` mask reaches into a document: each dotted path of keys, arrays on the way
//! applying it to every element, and everything under no listed path (`rest`). The mask,
//! verification and the scan all walk documents here, so they agree on which value lies
//! under which path.

use serde_json::Value;

use crate::config::masking::JsonMask;

/// What the walk meets.
pub enum Node<'a> {
    /// An object's key: no mask rewrites keys.
    Key(&'a str),
    /// A string or number, and the listed path it lies under (its index in the mask's
    /// paths), if any.
    Leaf(Option<usize>, &'a mut Value),
}

/// Visits every key of `doc`, and every string and number with the path of `json` it lies
/// under.
pub fn walk<E>(
    doc: &mut Value,
    json: &JsonMask,
    visit: &mut impl FnMut(Node<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let all: Vec<usize> = (0..json.paths.len()).collect();
    descend(doc, json, 0, &all, None, visit)
}

/// `node`, `depth` keys down; `candidates`: the paths whose first `depth` keys led here;
/// `at`: the path reached on the way, if any.
fn descend<E>(
    node: &mut Value,
    json: &JsonMask,
    depth: usize,
    candidates: &[usize],
    at: Option<usize>,
    visit: &mut impl FnMut(Node<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let at = at.or_else(|| {
        candidates
            .iter()
            .copied()
            .find(|&i| json.paths[i].0.len() == depth)
    });
    match node {
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                visit(Node::Key(key))?;
                let next: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| at.is_none() && json.paths[i].0.get(depth) == Some(key))
                    .collect();
                descend(value, json, depth + 1, &next, at, visit)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                descend(item, json, depth, candidates, at, visit)?;
            }
        }
        Value::String(_) | Value::Number(_) => visit(Node::Leaf(at, node))?,
        Value::Null | Value::Bool(_) => {}
    }
    Ok(())
}

/// A leaf's text: a string's own, a number's digits.
pub fn leaf_text(leaf: &Value) -> String {
    match leaf {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::masking::Mask;

    #[test]
    fn leaves_are_found_under_their_paths_through_arrays() {
        let json = JsonMask {
            paths: vec![
                (vec!["contact".into(), "email".into()], Mask::Email),
                (vec!["phones".into()], Mask::Phone),
            ],
            rest: None,
        };
        let mut doc: Value = serde_json::from_str(
            r#"{"contact": [{"email": "a@x.org", "lang": "en"}, [{"email": {"old": "b@x.org"}}]],
                "phones": ["+1 555", 49151, null, true], "n": 1, "contact.email": "c"}"#,
        )
        .unwrap();
        let mut seen = Vec::new();
        walk(&mut doc, &json, &mut |node| {
            seen.push(match node {
                Node::Key(k) => format!("key {k}"),
                Node::Leaf(at, leaf) => format!("{at:?} {}", leaf_text(leaf)),
            });
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "key contact",
                "key email",
                "Some(0) a@x.org",
                "key lang",
                "None en",
                "key email",
                "key old",
                "Some(0) b@x.org",
                "key contact.email",
                "None c",
                "key n",
                "None 1",
                "key phones",
                "Some(1) +1 555",
                "Some(1) 49151",
            ]
        );
    }
}
