//! The crate's layering: every module uses only the modules listed above it in the map at the
//! top of `src/lib.rs`, so the imports between modules form no cycle and the code reads from
//! the ground up. A `crate::x` path in a module's files (outside comments) is a use of `x`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules in the map's order: the `| [`name`] | ... |` rows of lib.rs's doc comment.
fn layers(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! | [`"))
        .filter_map(|row| row.split_once("`]"))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The modules lib.rs declares.
fn declared(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches("pub ");
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .collect()
}

fn files_of(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let file = src.join(format!("{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The crate modules `text` names by `crate::x` or `crate::{x, y::z}`.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = item.trim().split("::").next().unwrap_or("");
                if !name.is_empty() && name != "self" {
                    used.insert(name.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

#[test]
fn every_module_uses_only_the_modules_below_it() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let order = layers(&lib);
    assert_eq!(
        order.iter().cloned().collect::<BTreeSet<_>>(),
        declared(&lib),
        "the map in src/lib.rs lists exactly the modules lib.rs declares"
    );
    let mut wrong = vec![];
    for (level, module) in order.iter().enumerate() {
        let files = files_of(module);
        assert!(!files.is_empty(), "no source files for module {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(&text) {
                match order.iter().position(|m| *m == used) {
                    Some(at) if at < level => {}
                    Some(at) if at == level => {}
                    Some(_) => wrong.push(format!(
                        "{} ({module}) uses crate::{used}, which the map lists after {module}",
                        file.display()
                    )),
                    None => wrong.push(format!(
                        "{} uses crate::{used}, which is not a module of the map",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports of a module listed after the importer in the map of src/lib.rs (move the code, or the module in the map):\n{}",
        wrong.join("\n")
    );
}

/// The modules README's architecture map lists, in its order: the backticked names in the
/// first column of the table under "## Architecture" (`config/` is `config`).
fn readme_layers(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Architecture\n")
        .nth(1)
        .expect("README has an Architecture section");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| module |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|name| name.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_readme_map_lists_the_modules_in_lib_rs_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert_eq!(
        readme_layers(&readme),
        layers(&lib),
        "README's architecture map and the map in src/lib.rs list the same modules in the same order"
    );
}

#[test]
fn uses_are_read_from_paths_and_groups() {
    let found = uses(
        "use crate::config::{Config, Secret};\nuse crate::{media, report::Phase};\n// crate::cli in a comment\nlet x = crate::fault::point(\"a\");",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["config", "fault", "media", "report"]
    );
}
