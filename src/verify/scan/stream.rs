//! The PII scan in the restore stream: the decode stage already holds every COPY row the
//! masker passes on, so the values of the columns no mask rewrites are classified there, as
//! they pass ([`Scanning`], a [`StreamStage`] around the [`Masker`]), and the anonymize phase
//! does not read them back. What the stream cannot see stays the database scan's: rows
//! written by INSERTs, columns a COPY left out (generated, defaulted), materialized views,
//! extensions' tables, and every table of a COPY whose row outgrew [`MAX_ROW`]. Verification
//! proves the rest is what streamed past: every row of a [`StreamScan::covered`] table must
//! carry one of its COPYs' transactions.
//!
//! What is scanned, and the findings, are the database scan's ([`super::rows`]): each value
//! whole, never printed, only counted.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;

use super::Finding;
use super::classify::kinds_in_value;
use super::column_names::kind_by_name;
use super::rows::masked_or_empty;
use crate::config::AnonymizeConfig;
use crate::mask::array::{self, ArrayError};
use crate::mask::catalog::Answer;
use crate::mask::copy;
use crate::mask::shape::{BaseType, ColumnShape};
use crate::mask::{CopyFields, Masked, Masker};
use crate::restore::filter::Action;
use crate::restore::statement::Statement;
use crate::restore::{At, Question, StageError, StreamStage};
use crate::table::TableName;

/// The longest row held to be scanned whole; a COPY with a longer one is left to the
/// database scan (which reads long values in windows), so memory stays bounded.
pub const MAX_ROW: usize = 16 << 20;

/// Why the stream scan stops the run: the server would read the row otherwise than the
/// scan did, so a value could pass unseen.
#[derive(Debug, thiserror::Error)]
#[error(
    "dump line {line}: COPY into {table}, row {row}: {why}; pg_dump never writes this, and \
     the server would read the row otherwise than the PII scan"
)]
pub struct FramingError {
    line: u64,
    table: String,
    row: u64,
    why: String,
}

/// What the stream scan found and which values it read.
#[derive(Debug, Default)]
pub struct StreamScan {
    pub findings: Vec<Finding>,
    /// Per table, the columns every COPY into it listed: the stream read each of their
    /// values, provided the table's rows are all its COPYs'.
    pub covered: BTreeMap<TableName, BTreeSet<String>>,
    /// Time spent scanning, on the decode thread.
    pub seconds: f64,
}

/// The masker, and the scan of the rows it passes on.
pub struct Scanning {
    masker: Masker,
    scan: Scan,
}

/// The scan of the rows the masker passes on.
struct Scan {
    cfg: AnonymizeConfig,
    copy: Option<CopyScan>,
    covered: BTreeMap<TableName, BTreeSet<String>>,
    /// Tables a COPY into which the stream could not read whole.
    unread: BTreeSet<TableName>,
    counts: Counts,
    seconds: f64,
}

/// Values per (table, how found, column's place in the COPY, column, kind): the database
/// scan's order, each table's column names' findings before its values', in column order.
type Counts = BTreeMap<(String, By, usize, String, &'static str), u64>;

/// How a finding was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum By {
    /// The column's name says PII and it holds values the rules did not mask.
    ColumnName,
    /// Values look like PII.
    Values,
}

impl By {
    fn as_str(self) -> &'static str {
        match self {
            By::ColumnName => "column name",
            By::Values => "values",
        }
    }
}

/// The COPY in progress.
struct CopyScan {
    table: TableName,
    line: u64,
    into: Vec<TableName>,
    listed: Vec<String>,
    /// Per field, when it is scanned: how.
    fields: Vec<Option<Field>>,
    /// The start of a row the last chunk cut.
    partial: Vec<u8>,
    rows: u64,
    /// A row outgrew [`MAX_ROW`]: the rest is the database scan's.
    unread: bool,
}

/// A scanned field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    /// What its column's name says it holds.
    named: Option<&'static str>,
    array: bool,
    json: bool,
}

/// Whether the scan reads a column of this shape: text-like (strings, json, jsonb, xml, and
/// arrays of them), as the database scan's choice of columns.
fn scanned(shape: &ColumnShape) -> bool {
    matches!(
        shape.base,
        BaseType::Text | BaseType::Json | BaseType::Jsonb | BaseType::Xml
    )
}

impl Scanning {
    pub fn new(masker: Masker, cfg: &AnonymizeConfig) -> Scanning {
        Scanning {
            masker,
            scan: Scan::new(cfg),
        }
    }

    /// The masker and what the scan found, at the end of the dump.
    pub fn finish(self) -> (Masker, StreamScan) {
        (self.masker, self.scan.finish())
    }
}

impl Scan {
    fn new(cfg: &AnonymizeConfig) -> Scan {
        Scan {
            cfg: cfg.clone(),
            copy: None,
            covered: BTreeMap::new(),
            unread: BTreeSet::new(),
            counts: BTreeMap::new(),
            seconds: 0.0,
        }
    }

    fn finish(self) -> StreamScan {
        let findings = self
            .counts
            .into_iter()
            .map(|((table, by, _, column, kind), count)| Finding {
                table,
                column,
                kind: kind.to_owned(),
                by: by.as_str().to_owned(),
                count,
            })
            .collect();
        let mut covered = self.covered;
        covered.retain(|table, _| !self.unread.contains(table));
        StreamScan {
            findings,
            covered,
            seconds: self.seconds,
        }
    }

    /// The COPY `s` the masker just started (`table`, `copy`) begins.
    fn copy_start(&mut self, s: &Statement, table: TableName, copy: CopyFields<'_>) {
        // What a column's name says may depend on its table's other text-like columns.
        let siblings: Vec<&str> = copy
            .columns
            .iter()
            .filter(|c| scanned(c))
            .map(|c| c.name.as_str())
            .collect();
        let fields = copy
            .fields
            .iter()
            .map(|(name, shape, masked)| {
                let shape = shape.filter(|shape| !masked && !copy.emptied && scanned(shape))?;
                Some(Field {
                    named: kind_by_name(&table.name, name, &siblings),
                    array: shape.array,
                    json: matches!(shape.base, BaseType::Json | BaseType::Jsonb),
                })
            })
            .collect();
        self.copy = Some(CopyScan {
            table,
            line: s.line,
            into: copy.into.into_iter().cloned().collect(),
            listed: copy
                .fields
                .iter()
                .map(|(n, _, _)| (*n).to_owned())
                .collect(),
            fields,
            partial: Vec::new(),
            rows: 0,
            unread: false,
        });
    }

    /// Scans the complete rows of `data` (the masker's output), holding a cut row back.
    fn data(&mut self, data: &[u8]) -> Result<(), FramingError> {
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        if copy.unread || copy.fields.iter().all(Option::is_none) {
            return Ok(());
        }
        let started = Instant::now();
        let mut rest = data;
        if !copy.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                hold(copy, rest);
                self.seconds += started.elapsed().as_secs_f64();
                return Ok(());
            };
            copy.partial.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
            let row = std::mem::take(&mut copy.partial);
            rows(copy, &row, &self.cfg, &mut self.counts)?;
        }
        let whole = memchr::memrchr(b'\n', rest).map_or(0, |end| end + 1);
        rows(copy, &rest[..whole], &self.cfg, &mut self.counts)?;
        hold(copy, &rest[whole..]);
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn copy_end(&mut self) -> Result<(), FramingError> {
        let Some(mut copy) = self.copy.take() else {
            return Ok(());
        };
        let tail = std::mem::take(&mut copy.partial);
        if !copy.unread {
            rows(&mut copy, &tail, &self.cfg, &mut self.counts)?;
        }
        if copy.unread {
            self.unread.extend(copy.into);
            return Ok(());
        }
        for table in copy.into {
            let listed: BTreeSet<String> = copy.listed.iter().cloned().collect();
            match self.covered.get_mut(&table) {
                // Another COPY into it: only what both listed was read for every row.
                Some(columns) => columns.retain(|c| listed.contains(c)),
                None => {
                    self.covered.insert(table, listed);
                }
            }
        }
        Ok(())
    }
}

/// Keeps the start of a cut row, unless it outgrows [`MAX_ROW`].
fn hold(copy: &mut CopyScan, start: &[u8]) {
    if copy.partial.len() + start.len() > MAX_ROW {
        copy.unread = true;
        copy.partial = Vec::new();
    } else {
        copy.partial.extend_from_slice(start);
    }
}

/// Scans whole rows (each ending in `\n`, the last one maybe not).
fn rows(
    copy: &mut CopyScan,
    lines: &[u8],
    cfg: &AnonymizeConfig,
    counts: &mut Counts,
) -> Result<(), FramingError> {
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        copy.rows += 1;
        let refused = |why: String| FramingError {
            line: copy.line,
            table: copy.table.to_string(),
            row: copy.rows,
            why,
        };
        copy::framing(line).map_err(|why| refused(why.to_owned()))?;
        let mut fields = copy::fields(line);
        for (i, scan) in copy.fields.iter().enumerate() {
            let Some(field) = fields.next() else {
                return Err(refused(format!(
                    "{i} fields for {} columns",
                    copy.fields.len()
                )));
            };
            let Some(scan) = scan else { continue };
            let Some(value) = decoded(field) else {
                continue;
            };
            let mut count = |kind, by| {
                let key = (copy.table.to_string(), by, i, copy.listed[i].clone(), kind);
                *counts.entry(key).or_insert(0) += 1;
            };
            if let Some(kind) = scan.named
                && !masked_or_empty(&String::from_utf8_lossy(&value), cfg)
            {
                count(kind, By::ColumnName);
            }
            let mut kinds = Vec::new();
            texts(&value, *scan, |text| {
                kinds.extend(kinds_in_value(text, cfg))
            });
            kinds.sort_unstable();
            kinds.dedup();
            for kind in kinds {
                count(kind, By::Values);
            }
        }
        if fields.next().is_some() {
            return Err(refused(format!(
                "more fields than its {} columns",
                copy.fields.len()
            )));
        }
    }
    Ok(())
}

/// Hands `read` the texts of a field's `value` as the server stores them, where its text
/// form can hide characters: an array's elements, their literal's quotes and backslashes
/// undone (`{"jane\@example.org"}` holds `jane@example.org`), and a JSON document's `\u`
/// escapes undone (jsonb stores the characters). A value that does not parse is read as it
/// is (the server refuses it).
fn texts(value: &[u8], field: Field, mut read: impl FnMut(&str)) {
    let mut one = |text: &[u8]| {
        let text = String::from_utf8_lossy(text);
        if field.json
            && text.contains("\\u")
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return read(&doc.to_string());
        }
        read(&text)
    };
    let parsed = field.array
        && array::map(value, |element| {
            one(element);
            Ok::<_, ArrayError>(None)
        })
        .is_ok();
    // What a literal that does not parse holds is read again whole.
    if !parsed {
        one(value)
    }
}

/// A field's value (`None` for NULL), borrowed when it has no escape.
fn decoded(field: &[u8]) -> Option<Cow<'_, [u8]>> {
    if memchr::memchr(b'\\', field).is_none() {
        Some(Cow::Borrowed(field))
    } else {
        copy::decode(field).map(Cow::Owned)
    }
}

impl StreamStage for Scanning {
    type Answer = Answer;
    fn question(&mut self, at: At<'_>) -> Option<Question<Answer>> {
        self.masker.question(at)
    }
    fn statement(&mut self, s: &Statement, answer: Option<Answer>) -> Result<Action, StageError> {
        let action = StreamStage::statement(&mut self.masker, s, answer)?;
        if s.is_copy_from_stdin()
            && action == Action::Keep
            && let Some(copy) = self.masker.copy_fields()
        {
            self.scan.copy_start(s, self.masker.copy_table(s), copy);
        }
        Ok(action)
    }
    fn copy_table(&self, s: &Statement) -> TableName {
        self.masker.copy_table(s)
    }
    fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, StageError> {
        let out = self.masker.copy_data(data)?;
        if let Some(out) = &out {
            self.scan.data(out)?;
        }
        Ok(out)
    }
    fn copy_end(&mut self) -> Result<Option<Bytes>, StageError> {
        let tail = self.masker.copy_end()?;
        if let Some(tail) = &tail {
            self.scan.data(tail)?;
        }
        self.scan.copy_end()?;
        Ok(tail)
    }
    fn masks_copy(&self) -> bool {
        self.masker.masks_copy()
    }
    fn end(&mut self, answer: Option<Answer>) -> Result<(), StageError> {
        StreamStage::end(&mut self.masker, answer)
    }
}

/// The tables verification proves hold only their COPYs' rows: those with masked columns,
/// and those the stream scan read (unless INSERTs wrote there too: those the database scan
/// reads whole).
pub fn copied_tables<'a>(masked: &'a Masked, scan: &'a StreamScan) -> BTreeSet<&'a TableName> {
    let read = scan
        .covered
        .keys()
        .filter(|t| !masked.inserted.contains(*t));
    masked
        .applied
        .iter()
        .map(|(t, _, _)| t)
        .chain(read)
        .collect()
}

#[cfg(test)]
mod tests;
