//! What must not leave the staging host in anything sent out, beyond the server's DETAIL and
//! CONTEXT that the run report's `error_without_values` already leaves out: the value quoted
//! in a type error, and email addresses.

use std::sync::LazyLock;

use regex::{Captures, Regex};

static TYPE_ERROR_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(for (?:type|enum) [^:"]+: )"(?:[^"]|"")*""#).expect("valid regex")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(://)?[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
        .expect("valid regex")
});

/// `text` without the value in a type error and without email addresses (a URL's user@host
/// stays).
pub fn without_values(text: &str) -> String {
    let typed = TYPE_ERROR_VALUE.replace_all(text, r#"${1}"[value withheld]""#);
    EMAIL
        .replace_all(&typed, |c: &Captures| match c.get(1) {
            Some(_) => c[0].to_owned(),
            None => "[email address withheld]".to_owned(),
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_error_values_and_email_addresses_are_withheld() {
        assert_eq!(
            without_values(
                "dump line 4: ERROR: invalid input syntax for type uuid: \"jane's \"\"id\"\"\""
            ),
            "dump line 4: ERROR: invalid input syntax for type uuid: \"[value withheld]\""
        );
        assert_eq!(
            without_values(
                "no row of public.member has the production admin email \"boss@example.com\" \
                 on postgres://refresh@db.internal:5432/postgres"
            ),
            "no row of public.member has the production admin email \"[email address withheld]\" \
             on postgres://refresh@db.internal:5432/postgres"
        );
        let plain = "relation \"no_such_table\" does not exist";
        assert_eq!(without_values(plain), plain);
    }
}
