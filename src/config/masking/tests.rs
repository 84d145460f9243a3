use super::*;

fn rules(extra: serde_json::Value) -> Result<Rules, ConfigError> {
    let mut cfg = serde_json::json!({
        "admin_email": "admin@staging.example.com",
        "admin_password": "staging-admin-password",
        "accounts": {"table": "auth.members", "id": "member_id", "email": "login",
                     "password": "digest", "superuser": "staff"},
    });
    cfg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value::<crate::config::AnonymizeConfig>(cfg)
        .unwrap()
        .parse_rules()
}

fn refused(extra: serde_json::Value) -> String {
    rules(extra).unwrap_err().to_string()
}

#[test]
fn every_kind_is_parsed_and_shown_by_its_config_name() {
    for name in Mask::VARIANTS {
        let shown = Mask::parse(name, None).unwrap().to_string();
        let expected = if *name == "json" { "json()" } else { name };
        assert_eq!(shown, expected);
    }
    assert_eq!(
        Mask::parse("redact", None),
        Ok(Mask::Redact("redacted".into()))
    );
    assert_eq!(
        Mask::parse("Email", None).unwrap_err(),
        "unknown mask \"Email\"; one of keep, null, redact, email, name, phone, token, hash, \
         uuid, text, password, json"
    );
}

#[test]
fn rules_combine_with_the_runbook_and_table_modes() {
    let r = rules(serde_json::json!({
        "column": [
            {"table": "shop.customer", "column": "contact", "mask": "json",
             "paths": {"contact.email": "email", "phones": "phone"}},
            {"table": "customer", "column": "name", "mask": "redact", "value": "X"},
            {"table": "customer", "column": "doc", "mask": "json", "rest": "text"},
            {"table": "customer", "column": "tags", "mask": "json",
             "paths": {"a": "email"}, "rest": "keep"},
        ],
        "table": [{"table": "shop.customer", "mode": "keep"}, {"table": "session", "mode": "empty"}],
    }))
    .unwrap();
    let shop = TableName::new("shop", "customer");
    assert_eq!(r.mask([&shop], "id"), Some(&Mask::Keep));
    assert!(matches!(r.mask([&shop], "contact"), Some(Mask::Json(json)) if json.paths.len() == 2));
    assert_eq!(
        r.mask([&TableName::new("public", "customer")], "name"),
        Some(&Mask::Redact("X".into()))
    );
    let customer = TableName::new("public", "customer");
    let doc = r.mask([&customer], "doc").unwrap();
    assert_eq!(doc.to_string(), "json(; rest = text)");
    let members = TableName::new("auth", "members");
    assert_eq!(
        r.rule([&members], "login"),
        Some((&Mask::Email, Origin::Accounts))
    );
    assert_eq!(r.mask([&members], "digest"), Some(&Mask::Password));
    assert_eq!(r.mask([&members], "staff"), Some(&Mask::Redact("f".into())));
    assert_eq!(r.mask([&members], "member_id"), Some(&Mask::Keep));
    assert_eq!(r.mask([&members], "phone"), None);
    assert_eq!(
        r.mask([&customer], "tags").unwrap().to_string(),
        "json(a = email)"
    );
    assert_eq!(
        r.table_mode([&TableName::new("public", "session")]),
        Some(TableMode::Empty)
    );
    assert_eq!(r.unclassified, Unclassified::Fail);
}

#[test]
fn the_nearest_table_of_a_lineage_rules() {
    let r = rules(serde_json::json!({
        "column": [
            {"table": "event", "column": "email", "mask": "email"},
            {"table": "event_2025", "column": "email", "mask": "hash"},
        ],
        "table": [
            {"table": "event", "mode": "keep"},
            {"table": "log", "mode": "empty"},
            {"table": "log_kept", "mode": "keep"},
        ],
    }))
    .unwrap();
    let t = |name: &str| TableName::new("public", name);
    let (event, e2024, e2025) = (t("event"), t("event_2024"), t("event_2025"));
    // A partition follows its parent's column and table rules, unless it has its own.
    assert_eq!(r.mask([&e2024, &event], "email"), Some(&Mask::Email));
    assert_eq!(r.mask([&e2024, &event], "note"), Some(&Mask::Keep));
    assert_eq!(r.mask([&e2025, &event], "email"), Some(&Mask::Hash));
    assert_eq!(r.mask([&e2024], "email"), None);
    let (log, child) = (t("log"), t("log_2025"));
    assert_eq!(r.classify([&child, &log], "line", true), Class::Emptied);
    assert_eq!(
        r.classify([&t("log_kept"), &log], "line", true),
        Class::Ruled(&Mask::Keep, Origin::Table)
    );
}

#[test]
fn bad_rules_name_their_key() {
    let cases = [
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "scramble"}]}),
            "anonymize.column[0].mask: unknown mask \"scramble\"",
        ),
        (
            serde_json::json!({"column": [{"table": "a.b.c", "column": "c", "mask": "keep"}]}),
            "anonymize.column[0].table: \"a.b.c\" is not a table name",
        ),
        (
            serde_json::json!({"column": [{"table": "auth.members", "column": "login", "mask": "keep"}]}),
            "anonymize.column[0].column: auth.members.login is a column of anonymize.accounts",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "json"}]}),
            "anonymize.column[0].paths: a \"json\" mask needs paths",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "json",
                                           "paths": {"a..b": "email"}}]}),
            "anonymize.column[0].paths: \"a..b\" is not a dotted path",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "json",
                                           "paths": {"a": "email", "a.b": "name"}}]}),
            "anonymize.column[0].paths: \"a.b\" and \"a\" overlap",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "json",
                                           "rest": "json"}]}),
            "anonymize.column[0].rest: \"json\" does not apply inside JSON",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "text",
                                           "rest": "text"}]}),
            "anonymize.column[0].rest: only a \"json\" mask takes rest",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "email", "value": "x"}]}),
            "anonymize.column[0].value: only a \"redact\" mask takes a value",
        ),
        (
            serde_json::json!({"column": [{"table": "t", "column": "c", "mask": "keep"},
                                          {"table": "public.t", "column": "c", "mask": "null"}]}),
            "anonymize.column[1].column: public.t.c has a rule already",
        ),
        (
            serde_json::json!({"table": [{"table": "s", "mode": "empty"}],
                               "column": [{"table": "s", "column": "c", "mask": "keep"}]}),
            "anonymize.column[0].table: public.s is emptied",
        ),
        (
            serde_json::json!({"table": [{"table": "auth.members", "mode": "empty"}]}),
            "anonymize.table[0].mode: auth.members cannot be emptied",
        ),
    ];
    for (extra, expected) in cases {
        let err = refused(extra);
        let (key, message) = expected.split_once(": ").unwrap();
        let expected = format!("config key `{key}`: {message}");
        assert!(err.starts_with(&expected), "{err}\nexpected {expected}");
    }
}

#[test]
fn a_loaded_config_holds_its_rules_validated() {
    use crate::config::tests::{MINIMAL, key_of, load};
    let rule = |mask: &str| {
        format!("{MINIMAL}[[anonymize.column]]\ntable = \"t\"\ncolumn = \"c\"\nmask = \"{mask}\"\n")
    };
    let rules = load(&rule("email"), &[]).unwrap().anonymize.rules;
    assert_eq!(
        rules.mask([&TableName::new("public", "t")], "c"),
        Some(&Mask::Email)
    );
    assert_eq!(
        rules.rule([&TableName::new("public", "users")], "email"),
        Some((&Mask::Email, Origin::Accounts))
    );
    let err = load(&rule("scramble"), &[]).unwrap_err();
    assert!(
        err.to_string().contains("unknown mask \"scramble\""),
        "{err}"
    );
    assert_eq!(key_of(err), "anonymize.column[0].mask");
}
