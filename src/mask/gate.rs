//! The gate before the first row: every column of the dump whose type can hold personal data
//! has a rule, or (`anonymize.unclassified = "fail"`) the run stops before anything is
//! loaded, naming each such column; every mask fits its column ([`fit`]), or the run stops
//! naming each that does not. At the end of the dump, what the rules made of its columns
//! goes to verification and the report.

use crate::config::Unclassified;
use crate::config::masking::{Class, Mask, Rules};
use crate::table::{TableName, display_ident};

use super::Masked;
use super::error::MaskError;
use super::fit::fit;
use super::schema::{Column, Schema};
use super::shape::ColumnShape;

/// What the rules make of `column` of `table`, its type read in `schema`: the run's gate,
/// the report's classes and `plan`/`rules` all classify through this.
pub fn classify<'r>(
    rules: &'r Rules,
    schema: &Schema,
    table: &TableName,
    column: &Column,
) -> Class<'r> {
    rules.classify(table, &column.name, schema.is_personal(&column.ty))
}

/// Warns of the rules naming a column the dump's tables do not have (a typo, or a column
/// production dropped).
pub(super) fn warn_unknown_columns(rules: &Rules, schema: &Schema) {
    for (table, columns) in &rules.columns {
        for column in columns.keys() {
            let known = schema
                .columns(table)
                .is_some_and(|cols| cols.iter().any(|c| c.name == *column));
            if !known {
                tracing::warn!(
                    column = %format!("{table}.{}", display_ident(column)),
                    "a masking rule names a column the dump does not have"
                );
            }
        }
    }
}

/// Every personal column of `tables` has a rule, and every mask fits its column
/// (`email_domain`: what masked emails end with).
pub(super) fn check(
    rules: &Rules,
    schema: &Schema,
    tables: &[TableName],
    email_domain: &str,
) -> Result<(), MaskError> {
    let mut unclassified = Vec::new();
    let mut misfit = Vec::new();
    for table in tables {
        let mut ruled = Vec::new();
        for column in schema.columns(table).unwrap_or_default() {
            match classify(rules, schema, table, column) {
                Class::Ruled(mask, _) => ruled.push((schema.shape(table, column), mask)),
                Class::Unclassified => unclassified.push(format!(
                    "{table}.{} ({})",
                    display_ident(&column.name),
                    column.ty
                )),
                Class::Emptied | Class::NotPersonal => {}
            }
        }
        misfit.extend(misfits(
            email_domain,
            table,
            ruled.iter().map(|(s, m)| (s, *m)),
        ));
    }
    if !misfit.is_empty() {
        return Err(MaskError::Misfit(misfit));
    }
    refuse_unclassified(rules.unclassified, unclassified)
}

/// The masks of `table` that do not fit their columns, each as `table.column (type): why`.
pub(super) fn misfits<'a>(
    email_domain: &str,
    table: &TableName,
    ruled: impl IntoIterator<Item = (&'a ColumnShape, &'a Mask)>,
) -> Vec<String> {
    ruled
        .into_iter()
        .filter_map(|(shape, mask)| {
            let why = fit(mask, shape, email_domain).err()?;
            Some(format!(
                "{table}.{} ({}): {why}",
                display_ident(&shape.name),
                shape.type_name
            ))
        })
        .collect()
}

/// The mask of each column `names` lists (unclassified ones checked), `None` to keep.
pub(super) fn masks_of(
    rules: &Rules,
    schema: &Schema,
    table: &TableName,
    names: &[String],
) -> Result<Vec<Option<Mask>>, MaskError> {
    let columns = schema.columns(table).unwrap_or_default();
    let mut unclassified = Vec::new();
    let masks = names
        .iter()
        .map(|name| match rules.mask(table, name) {
            Some(Mask::Keep) => None,
            Some(mask) => Some(mask.clone()),
            None => {
                // A column the pre-data did not declare: its type is unknown, so personal.
                let column = columns.iter().find(|c| c.name == *name);
                if column.is_none_or(|c| schema.is_personal(&c.ty)) {
                    let ty = column.map_or("type unknown".to_owned(), |c| c.ty.to_string());
                    unclassified.push(format!("{table}.{} ({ty})", display_ident(name)));
                }
                None
            }
        })
        .collect();
    refuse_unclassified(rules.unclassified, unclassified)?;
    Ok(masks)
}

/// Notes in `masked` the column masks the dump's tables got (not `keep`), and the
/// personal-looking columns a `keep` rule classified as not personal.
pub(super) fn note_classes(rules: &Rules, schema: &Schema, masked: &mut Masked) {
    for (table, columns) in schema.tables() {
        for column in columns {
            match classify(rules, schema, table, column) {
                Class::Ruled(Mask::Keep, _) => {
                    masked.kept.push((table.clone(), column.name.clone()));
                }
                Class::Ruled(mask, _) => {
                    masked
                        .applied
                        .push((table.clone(), schema.shape(table, column), mask.clone()));
                }
                Class::Emptied | Class::Unclassified | Class::NotPersonal => {}
            }
        }
    }
}

/// Fails on `columns` (unclassified, as `table.column (type)`), or warns of them.
fn refuse_unclassified(policy: Unclassified, columns: Vec<String>) -> Result<(), MaskError> {
    if columns.is_empty() {
        return Ok(());
    }
    match policy {
        Unclassified::Fail => Err(MaskError::Unclassified(columns)),
        Unclassified::Warn => {
            tracing::warn!(
                columns = %columns.join(", "),
                "unclassified columns kept unmasked (anonymize.unclassified = \"warn\")"
            );
            Ok(())
        }
    }
}
