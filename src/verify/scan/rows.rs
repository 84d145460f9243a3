//! Every row of a table's scanned columns, in one sequential pass streamed from the server,
//! without ever holding a whole large value: each value arrives cut to its first window
//! ([`WINDOWS`]); the few longer than that are read on by `ctid` once the pass is done, each
//! in one query streaming its remaining windows.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::classify::kinds_starting_in;
use super::column_names::kind_by_name;
use super::{Finding, Scanned};
use crate::config::AnonymizeConfig;
use crate::database::sql::quote_ident;
use crate::table::TableName;
use crate::verify::{AnonymizeError, sql_error};

/// 1 MiB per window, with 1 KiB of context on each side: longer than any email, number or
/// token the classifier matches.
pub(super) const WINDOWS: Windows = Windows {
    width: 1 << 20,
    overlap: 1 << 10,
};

/// How a long value is read, in bytes of its UTF-8 (a `substring` of `bytea` starts where it
/// is asked to; one of `text` counts the characters before it, each time): window `k` owns
/// the bytes from `k * width` on, `width` of them, and reads `overlap` more on each side, so
/// a match no longer than `overlap` is seen whole (with the characters its edges look at) in
/// the window it starts in, and is counted there only.
pub(super) struct Windows {
    pub(super) width: usize,
    overlap: usize,
}

impl Windows {
    /// `substring`'s FROM (1-based) and FOR for the window owning the bytes from `start`
    /// (0-based, a multiple of `width`).
    pub(super) fn bounds(&self, start: usize) -> (usize, usize) {
        let before = start.min(self.overlap);
        (start - before + 1, before + self.width + self.overlap)
    }

    /// The kinds of the matches starting in what `window` (read with [`Windows::bounds`] of
    /// `start`) owns, and whether the value goes on after that.
    pub(super) fn kinds(
        &self,
        window: &[u8],
        start: usize,
        cfg: &AnonymizeConfig,
    ) -> (Vec<&'static str>, bool) {
        let before = start.min(self.overlap);
        let more = window.len() > before + self.width;
        // An edge may cut a character: its first bytes are skipped, its last decode to U+FFFD
        // after all that is owned.
        let cut = window
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        let text = String::from_utf8_lossy(&window[cut..]);
        let owned_from = before.saturating_sub(cut);
        let owned_to = (owned_from + self.width).min(text.len());
        (kinds_starting_in(&text, owned_from..owned_to, cfg), more)
    }
}

/// A value longer than its first window, and the kinds found in it so far.
struct Long {
    ctid: String,
    column: usize,
    kinds: BTreeSet<&'static str>,
}

/// Findings in every row of `columns` of `table` (only those the transaction `written_by`
/// wrote, when given): columns whose name says PII holding values the rules did not mask
/// ("column name"), and values that look like PII ("values").
pub(super) async fn scan(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    scanned: &Scanned,
    written_by: Option<&str>,
) -> Result<Vec<Finding>, AnonymizeError> {
    let (table, columns) = (&scanned.table, scanned.columns.as_slice());
    let what = format!("scanning {table}");
    let (from, length) = WINDOWS.bounds(0);
    let values: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "substring(convert_to({}::text, 'UTF8') FROM {from} FOR {length})",
                quote_ident(c)
            )
        })
        .collect();
    // The xid is a number we read from the server.
    let rows = match written_by {
        Some(xid) => format!("WHERE xmin::text = '{xid}'"),
        None => String::new(),
    };
    let sql = format!(
        "SELECT ctid::text, {} FROM {} {rows}",
        values.join(", "),
        table.sql()
    );
    let rows = tx
        .query_raw(&sql, std::iter::empty::<&(dyn ToSql + Sync)>())
        .await
        .map_err(sql_error(&what))?;
    let mut rows = std::pin::pin!(rows);
    let siblings: Vec<&str> = scanned.text_columns.iter().map(String::as_str).collect();
    let by_name: Vec<Option<&str>> = columns
        .iter()
        .map(|c| kind_by_name(&table.name, c, &siblings))
        .collect();
    let mut unmasked = vec![0u64; columns.len()];
    let mut matches: BTreeMap<(usize, &'static str), u64> = BTreeMap::new();
    let mut long = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(sql_error(&what))? {
        for (column, named) in by_name.iter().enumerate() {
            let Some(value) = row.get::<_, Option<&[u8]>>(column + 1) else {
                continue;
            };
            let (kinds, more) = WINDOWS.kinds(value, 0, cfg);
            // A masked email (or the admin's) is never as long as a window.
            if named.is_some() && (more || !masked_or_empty(&String::from_utf8_lossy(value), cfg)) {
                unmasked[column] += 1;
            }
            if more {
                long.push(Long {
                    ctid: row.get(0),
                    column,
                    kinds: kinds.into_iter().collect(),
                });
            } else {
                for kind in kinds {
                    *matches.entry((column, kind)).or_insert(0) += 1;
                }
            }
        }
    }
    // The rest of each long value, its windows cut from one conversion (OFFSET 0 keeps the
    // subquery, so its value is computed, and decompressed, once).
    let (width, overlap) = (WINDOWS.width, WINDOWS.overlap);
    for mut value in long {
        let rest = format!(
            "SELECT start, substring(v FROM start - {overlap} + 1 FOR {length})
             FROM (SELECT convert_to({}::text, 'UTF8') AS v FROM {}
                   WHERE ctid = $1::text::tid OFFSET 0) value,
                  LATERAL generate_series({width}, length(v) - 1, {width}) start",
            quote_ident(&columns[value.column]),
            table.sql(),
            length = WINDOWS.bounds(width).1,
        );
        let windows = tx
            .query_raw(&rest, [&value.ctid])
            .await
            .map_err(sql_error(&what))?;
        let mut windows = std::pin::pin!(windows);
        while let Some(row) = windows.try_next().await.map_err(sql_error(&what))? {
            let start: i32 = row.get(0);
            let (kinds, _) = WINDOWS.kinds(row.get(1), start as usize, cfg);
            value.kinds.extend(kinds);
        }
        for kind in value.kinds {
            *matches.entry((value.column, kind)).or_insert(0) += 1;
        }
    }
    let named = by_name
        .iter()
        .zip(&unmasked)
        .enumerate()
        .filter_map(|(column, (kind, &count))| {
            let kind = (*kind)?;
            (count > 0).then(|| finding(table, &columns[column], kind, "column name", count))
        });
    let found = matches
        .into_iter()
        .map(|((column, kind), count)| finding(table, &columns[column], kind, "values", count));
    Ok(named.chain(found).collect())
}

/// Whether a value of a column named like PII holds nothing personal: empty, a masked email
/// or the staging admin's.
pub(super) fn masked_or_empty(value: &str, cfg: &AnonymizeConfig) -> bool {
    let masked = format!("@{}", cfg.email_domain.to_lowercase());
    value.is_empty() || value == cfg.admin_email || value.to_lowercase().ends_with(&masked)
}

fn finding(table: &TableName, column: &str, kind: &str, by: &str, count: u64) -> Finding {
    Finding {
        table: table.to_string(),
        column: column.to_owned(),
        kind: kind.to_owned(),
        by: by.to_owned(),
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::super::classify::kinds_in_value;
    use super::super::classify::tests::cfg;
    use super::*;

    /// The kinds found reading `value` window by window, as [`scan`] reads a long value
    /// (`substring` counts bytes from 1).
    fn windowed(windows: &Windows, value: &str, cfg: &AnonymizeConfig) -> BTreeSet<&'static str> {
        let mut found = BTreeSet::new();
        let mut start = 0;
        loop {
            let (from, length) = windows.bounds(start);
            let window = &value.as_bytes()[from - 1..(from - 1 + length).min(value.len())];
            let (kinds, more) = windows.kinds(window, start, cfg);
            found.extend(kinds);
            if !more {
                return found;
            }
            start += windows.width;
        }
    }

    #[test]
    fn windows_find_what_the_whole_value_holds_wherever_the_edges_fall() {
        let c = cfg();
        let windows = Windows {
            width: 16,
            overlap: 40,
        };
        let values = [
            // Found: straddling an edge.
            "write to jane.doe@example.com today",
            "call +39 06 1234 5678 now",
            "card 4111 1111 1111 1111 ok",
            "key sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "met Jane Doe there",
            "from 192.168.0.17 ok",
            "client 2001:db8::8a2e:370:7334 ok",
            "at 221B Baker Street",
            // Not found, though a cut would make them look personal: the admin's and masked
            // emails cut short, a number that follows a letter, a UUID's digits.
            "admin@staging.example.com and anon_0123456789abcdef@staging.invalid",
            "ref x+39 06 1234 5678",
            "id 32580007-6623-4424-8680-400175019672 end",
            "version v10.2.3.45 and Grant Park",
        ];
        for value in values {
            let whole: BTreeSet<_> = kinds_in_value(value, &c).into_iter().collect();
            // Every position of the value against the window edges, with two-byte
            // characters before it (some edges cut one).
            for shift in 0..40 {
                let shifted = format!("{}{value}", "é".repeat(shift));
                assert_eq!(
                    windowed(&windows, &shifted, &c),
                    whole,
                    "{value:?} shifted by {shift}"
                );
            }
        }
    }

    #[test]
    fn a_window_says_whether_the_value_goes_on() {
        let c = cfg();
        let windows = Windows {
            width: 4,
            overlap: 2,
        };
        assert!(!windows.kinds(b"abcd", 0, &c).1);
        assert!(windows.kinds(b"abcde", 0, &c).1);
        assert!(!windows.kinds(b"cdefgh", 4, &c).1);
        assert!(windows.kinds(b"cdefghi", 4, &c).1);
        assert_eq!(windows.bounds(0), (1, 6));
        assert_eq!(windows.bounds(4), (3, 8));
    }
}
