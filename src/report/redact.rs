//! What leaves the staging host (the email, the chat webhooks, the metrics' labels) carries
//! no production value. Server messages reach it only as their structure (the run report's
//! `error_without_values`); on top of that, every text sent passes through [`Recipients`]:
//! a name or any other part that looks personal to the PII scan's detectors (an email, a
//! phone number, a token, an IBAN, a card number: a table named after a customer, say) is
//! shown by a short keyed hash, the same one in every channel, and a long list is cut to
//! its first items and a count.

use std::sync::LazyLock;

use regex::Regex;

use crate::config::{AnonymizeConfig, Config};
use crate::database::Server;
use crate::mask::Key;
use crate::verify::scan::kinds_in_value;

/// Items of a comma-separated list shown before the count of the rest.
const LIST_ITEMS: usize = 20;
/// Characters of one line shown at most.
const LINE_CHARS: usize = 4000;

/// The parts a text is judged by: SQL-quoted names, phone numbers as they are written
/// (spaces included), and runs of anything else between spaces and separators.
static PART: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(?:[^"]|"")*"|\+[0-9][0-9 ().-]{5,}[0-9]|[^\s",;()]+"#).expect("valid regex")
});

/// How everything sent out is shown; see the module's documentation.
#[derive(Debug, Clone)]
pub struct Recipients {
    /// The masking key, which the hashes are made with: without it, nobody can tell which
    /// value a hash stands for by hashing guesses. `None` when it cannot be read: then a
    /// personal-looking part is withheld without a hash.
    key: Option<Key>,
    anonymize: AnonymizeConfig,
    /// Texts of the product's own that look personal and are not: the server's URL
    /// (`user@host` reads like an email address).
    own: Vec<String>,
}

impl Recipients {
    pub fn new(config: &Config) -> Recipients {
        let key = Key::load(
            config.anonymize.mask_key_file.as_deref(),
            &config.daemon.state_dir,
        )
        .inspect_err(|e| tracing::warn!(error = %e, "personal-looking names are withheld unhashed"))
        .ok();
        Recipients {
            key,
            anonymize: config.anonymize.clone(),
            own: vec![Server::new(&config.database.url).redacted().to_owned()],
        }
    }

    /// A name (a table's, a column's) as recipients see it: each part that looks personal
    /// (`public."Jane +44 20 7946 0958"`'s quoted one) by its hash.
    pub fn name(&self, name: &str) -> String {
        PART.replace_all(name, |c: &regex::Captures| self.part(&c[0]))
            .into_owned()
    }

    /// A text as recipients see it: each personal-looking part hashed, long lists cut.
    pub fn text(&self, text: &str) -> String {
        let mut shown = String::with_capacity(text.len());
        let mut rest = text;
        // The product's own texts pass whole; what is between them is judged part by part.
        while let Some((at, own)) = self
            .own
            .iter()
            .filter_map(|own| rest.find(own.as_str()).map(|at| (at, own)))
            .min()
        {
            shown.push_str(&self.name(&rest[..at]));
            shown.push_str(own);
            rest = &rest[at + own.len()..];
        }
        shown.push_str(&self.name(rest));
        shown.lines().map(capped).collect::<Vec<_>>().join("\n")
    }

    /// One part: itself, or its hash when it looks personal.
    fn part(&self, part: &str) -> String {
        if kinds_in_value(part, &self.anonymize).is_empty() {
            part.to_owned()
        } else {
            self.hashed(part)
        }
    }

    /// `[hashed 1a2b3c4d]`: the first 4 bytes of HMAC-SHA256 of `value` under the masking key.
    fn hashed(&self, value: &str) -> String {
        match &self.key {
            Some(key) => {
                let digest = key.digest(&[b"shown name\0", value.as_bytes()]);
                format!("[hashed {}]", hex::encode(&digest[..4]))
            }
            None => "[withheld]".to_owned(),
        }
    }
}

/// `line` with a list longer than [`LIST_ITEMS`] cut to its first items, a count of the
/// rest and its last item (which carries the text after the list), and at most
/// [`LINE_CHARS`] characters.
pub fn capped(line: &str) -> String {
    let items: Vec<&str> = line.split(", ").collect();
    let mut line = if items.len() > LIST_ITEMS + 1 {
        format!(
            "{}, … {} more …, {}",
            items[..LIST_ITEMS].join(", "),
            items.len() - LIST_ITEMS - 1,
            items[items.len() - 1]
        )
    } else {
        line.to_owned()
    };
    if let Some((cut, _)) = line.char_indices().nth(LINE_CHARS) {
        let left = line[cut..].chars().count();
        line.truncate(cut);
        line.push_str(&format!(
            "… ({left} more characters: `staging-refresh status` on the staging host shows \
             them)"
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipients() -> Recipients {
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/config.toml");
        let config = Config::load_with_env(&shipped, Some(Default::default())).unwrap();
        Recipients {
            key: Some(Key::from_bytes(&[7; 32])),
            own: vec!["postgres://refresh@db.internal:5432/postgres".into()],
            anonymize: config.anonymize,
        }
    }

    #[test]
    fn personal_looking_parts_are_hashed_alike_everywhere() {
        let r = recipients();
        let shown = r.text(
            "loading COPY data into public.\"Jane +44 20 7946 0958\" (COPY at dump line 9) on \
             postgres://refresh@db.internal:5432/postgres; no user has jane@example.org",
        );
        let table = r.name("public.\"Jane +44 20 7946 0958\"");
        assert!(
            table.starts_with("public.[hashed ") && table.len() == 24,
            "{table}"
        );
        assert_eq!(
            shown,
            format!(
                "loading COPY data into {table} (COPY at dump line 9) on \
                 postgres://refresh@db.internal:5432/postgres; no user has {}",
                r.name("jane@example.org")
            )
        );
        assert_eq!(r.name("public.customer"), "public.customer");
        assert_eq!(
            r.text("phone +44 20 7946 0958."),
            format!("phone {}.", r.name("+44 20 7946 0958"))
        );
    }

    #[test]
    fn long_lists_are_cut_to_a_count() {
        let columns: Vec<String> = (0..160_000)
            .map(|i| format!("public.t.c{i} (text)"))
            .collect();
        let line = format!(
            "unclassified columns: {}; give each a rule",
            columns.join(", ")
        );
        let shown = recipients().text(&line);
        assert!(shown.len() < 1000, "{}", shown.len());
        assert!(shown.starts_with("unclassified columns: public.t.c0 (text), public.t.c1 (text)"));
        assert!(
            shown.ends_with(", … 159979 more …, public.t.c159999 (text); give each a rule"),
            "{shown}"
        );
        let long = "x".repeat(LINE_CHARS + 10);
        assert!(recipients().text(&long).ends_with(
            "… (10 more characters: `staging-refresh status` on the staging host shows them)"
        ));
    }
}
