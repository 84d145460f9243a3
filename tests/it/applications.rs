//! Any application's database: no application's table or column name is compiled in, and the
//! dumps real applications write restore with the README's recommended roles.

/// Table and column names of the application this was first written for: they belong in its
/// config (`etc/config.toml`, the tests' fixtures), never in `src/`.
const APPLICATION_NAMES: &[&str] = &[
    "external_system_integration",
    "hashed_password",
    "shootify",
    "full_name",
    "is_superuser",
    "is_active",
    "push_service",
    "push_products",
];

/// Its users table, `public."user"`, however a source spells it.
const USER_TABLE: &[&str] = &[
    "public.\"user\"",
    "public.\\\"user\\\"",
    "\"public\", \"user\"",
    "parse(\"user\")",
];

#[test]
fn no_application_table_or_column_name_is_in_the_source() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let lower = line.to_lowercase();
                let word = |name: &str| {
                    lower.match_indices(name).any(|(at, _)| {
                        let after = lower[at + name.len()..].chars().next();
                        !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                };
                if APPLICATION_NAMES.iter().any(|name| lower.contains(name))
                    || USER_TABLE.iter().any(|spelling| lower.contains(spelling))
                    || word("public.user")
                {
                    found.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
