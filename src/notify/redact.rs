//! What must not leave the staging host in anything sent out: PostgreSQL's DETAIL and CONTEXT
//! (which quote rows and key values), the value in a type error, and email addresses.

use std::sync::LazyLock;

use regex::{Captures, Regex};

static TYPE_ERROR_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(for (?:type|enum) [^:"]+: )"(?:[^"]|"")*""#).expect("valid regex")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(://)?[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
        .expect("valid regex")
});

/// `error` without what can quote production data: PostgreSQL's DETAIL and CONTEXT (rows,
/// key values), the value in a type error, email addresses (a URL's user@host stays). Also
/// says whether anything was withheld.
pub fn without_values(error: &str) -> (String, bool) {
    let mut shown = error;
    // `restore::loader::db_message` writes the server's DETAIL and CONTEXT after these.
    for part in ["; DETAIL: ", "; CONTEXT: "] {
        if let Some(at) = shown.find(part) {
            shown = &shown[..at];
        }
    }
    let typed = TYPE_ERROR_VALUE.replace_all(shown, r#"${1}"[value withheld]""#);
    let masked = EMAIL.replace_all(&typed, |c: &Captures| match c.get(1) {
        Some(_) => c[0].to_owned(),
        None => "[email address withheld]".to_owned(),
    });
    let withheld = masked != error;
    (masked.into_owned(), withheld)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_lose_what_can_quote_production_data() {
        let (shown, withheld) = without_values(
            "restoring x: dump line 9: ERROR: could not create unique index \"user_email_key\"; \
             DETAIL: Key (email)=(jane@example.org) is duplicated.; CONTEXT: COPY user, line 3",
        );
        assert_eq!(
            shown,
            "restoring x: dump line 9: ERROR: could not create unique index \"user_email_key\""
        );
        assert!(withheld);

        let (shown, _) = without_values(
            "dump line 4: ERROR: invalid input syntax for type uuid: \"jane's \"\"id\"\"\"",
        );
        assert_eq!(
            shown,
            "dump line 4: ERROR: invalid input syntax for type uuid: \"[value withheld]\""
        );

        let (shown, _) = without_values(
            "no user has the production admin email \"boss@shootify.io\" \
             on postgres://refresh@db.internal:5432/postgres",
        );
        assert_eq!(
            shown,
            "no user has the production admin email \"[email address withheld]\" \
             on postgres://refresh@db.internal:5432/postgres"
        );

        let plain = "relation \"no_such_table\" does not exist";
        assert_eq!(without_values(plain), (plain.to_owned(), false));
    }
}
