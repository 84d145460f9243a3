//! What to do about a failure whose cause says more than "fix it and retry": the "What to
//! do" section for each [`Cause`].

use super::{Line, text};
use crate::report::Cause;

/// The steps for `cause`; `snapshot` is the one the run chose, `retry` runs it again.
pub(super) fn advice(cause: &Cause, snapshot: Option<&str>, retry: &str) -> Vec<Line> {
    let again = Line::Command(retry.to_owned());
    match cause {
        Cause::Unclassified { columns } => vec![
            text(format!(
                "Production's schema has {columns} column(s) no masking rule classifies. Print \
                 the suggested rules, review them, add them under [anonymize] in the config (and \
                 `systemctl reload staging-refresh`), then run again:"
            )),
            Line::Command(format!(
                "staging-refresh rules --snapshot {} --toml",
                snapshot.unwrap_or("latest")
            )),
            again,
        ],
        Cause::BadSnapshot {
            snapshot,
            previous: Some(previous),
        } => vec![
            text(format!(
                "The snapshot {snapshot} is bad (corrupt or incomplete): retrying it fails the \
                 same way, and the next backup replaces it. To refresh now from the one before \
                 it:"
            )),
            Line::Command(format!("staging-refresh run --snapshot {previous}")),
            text("or, through the daemon:"),
            Line::Command(format!("systemctl start staging-refresh@{previous}")),
        ],
        Cause::BadSnapshot {
            snapshot,
            previous: None,
        } => vec![
            text(format!(
                "The snapshot {snapshot} is bad (corrupt or incomplete), and the bucket holds \
                 none before it: check production's backups, and list what the bucket holds:"
            )),
            Line::Command("staging-refresh snapshots".into()),
        ],
        Cause::AdminNotFound { table, column } => vec![
            text(format!(
                "The key anonymize.prod_admin_email matched no row: it was looked for in column \
                 {column} of {table} (anonymize.accounts). Set it to the production admin's \
                 email as that column holds it, or leave it out to mask every account; then \
                 run again:"
            )),
            again,
        ],
        Cause::NotOptedIn => vec![
            text(
                "Staging has not opted in as a refresh target. If the database (and media \
                 bucket) named in the error are staging's, mark them once, check the rest of \
                 the configuration and targets, then run again:",
            ),
            Line::Command("staging-refresh init-target".into()),
            Line::Command("staging-refresh check".into()),
            again,
        ],
        Cause::RestoreRoleLogin { sql } => {
            let mut lines = vec![text(
                "The restore cannot log in as its role. As a superuser on the staging server, \
                 run the first statement (and set database.restore_password_file to a file \
                 holding the password you chose) or the second; then run again:",
            )];
            lines.extend(sql.iter().map(|s| Line::Command(s.clone())));
            lines.push(again);
            lines
        }
        Cause::Forbidden {
            line,
            statement,
            why,
        } => vec![
            text(format!(
                "The restore role may not run \"{statement}\" (dump line {line}): {why}. Once \
                 that is done, run again:"
            )),
            again,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section as one text: its lines, commands in backquotes.
    fn said(cause: Cause) -> String {
        let lines = advice(
            &cause,
            Some("pgsql_app_db_20260102-030000.sql.zst"),
            "RETRY",
        );
        let lines: Vec<String> = lines
            .into_iter()
            .map(|line| match line {
                Line::Text(t) => t,
                Line::Command(c) => format!("`{c}`"),
                Line::Row(cells) => cells.join(" "),
            })
            .collect();
        lines.join("\n")
    }

    #[test]
    fn each_cause_says_what_to_do() {
        let unclassified = said(Cause::Unclassified { columns: 1 });
        assert!(
            unclassified.contains(
                "`staging-refresh rules --snapshot pgsql_app_db_20260102-030000.sql.zst --toml`"
            ),
            "{unclassified}"
        );
        let bad = said(Cause::BadSnapshot {
            snapshot: "new".into(),
            previous: Some("pgsql_app_db_20260101-030000.sql.zst".into()),
        });
        assert!(
            bad.contains("`staging-refresh run --snapshot pgsql_app_db_20260101-030000.sql.zst`"),
            "{bad}"
        );
        assert!(
            !bad.contains("RETRY"),
            "retrying a bad snapshot fails again: {bad}"
        );
        let none_before = said(Cause::BadSnapshot {
            snapshot: "new".into(),
            previous: None,
        });
        assert!(
            none_before.contains("`staging-refresh snapshots`"),
            "{none_before}"
        );
        let admin = said(Cause::AdminNotFound {
            table: "public.member".into(),
            column: "email".into(),
        });
        assert!(
            admin.contains("anonymize.prod_admin_email")
                && admin.contains("column email of public.member"),
            "{admin}"
        );
        let marker = said(Cause::NotOptedIn);
        assert!(marker.contains("`staging-refresh init-target`"), "{marker}");
        let login = said(Cause::RestoreRoleLogin {
            sql: vec![
                "CREATE ROLE r LOGIN PASSWORD '...';".into(),
                "ALTER ROLE x CREATEROLE;".into(),
            ],
        });
        assert!(
            login.contains("`CREATE ROLE r LOGIN PASSWORD '...';`")
                && login.contains("`ALTER ROLE x CREATEROLE;`"),
            "{login}"
        );
        let forbidden = said(Cause::Forbidden {
            line: 9,
            statement: "CREATE EXTENSION postgis".into(),
            why: "as a superuser: CREATE EXTENSION postgis in database.template".into(),
        });
        assert!(
            forbidden.contains("(dump line 9): as a superuser: CREATE EXTENSION postgis"),
            "{forbidden}"
        );
    }
}
