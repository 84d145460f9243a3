//! The gate before the first row: every column of the dump whose type can hold personal data
//! has a rule, or (`anonymize.unclassified = "fail"`) the run stops before anything is
//! loaded, naming each such column; a `null` mask never meets a NOT NULL column. At the end
//! of the dump, what the rules made of its columns goes to verification and the report.

use crate::config::Unclassified as UnclassifiedPolicy;
use crate::config::masking::{Class, Mask, Rules};
use crate::table::{TableName, display_ident};

use super::Masked;
use super::error::{MaskError, Unclassified};
use super::schema::{Column, Schema};

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

/// Every personal column of `tables` has a rule, and no `null` mask meets NOT NULL.
pub(super) fn check(rules: &Rules, schema: &Schema, tables: &[TableName]) -> Result<(), MaskError> {
    let mut unclassified = Unclassified::default();
    for table in tables {
        for column in schema.columns(table).unwrap_or_default() {
            match classify(rules, schema, table, column) {
                Class::Ruled(Mask::Null, _) if column.not_null => {
                    return Err(MaskError::NullOnNotNull {
                        column: format!("{table}.{}", display_ident(&column.name)),
                    });
                }
                Class::Unclassified => {
                    let name = display_ident(&column.name);
                    unclassified.push(table.to_string(), format!("{name} ({})", column.ty));
                }
                Class::Ruled(..) | Class::Emptied | Class::NotPersonal => {}
            }
        }
    }
    refuse_unclassified(rules.unclassified, unclassified)
}

/// The mask of each column `names` lists (unclassified ones checked), `None` to keep.
pub(super) fn masks_of(
    rules: &Rules,
    schema: &Schema,
    table: &TableName,
    names: &[String],
) -> Result<Vec<Option<Mask>>, MaskError> {
    let columns = schema.columns(table).unwrap_or_default();
    let mut unclassified = Unclassified::default();
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
                    unclassified.push(table.to_string(), format!("{} ({ty})", display_ident(name)));
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
                        .push((table.clone(), column.name.clone(), mask.clone()));
                }
                Class::Emptied | Class::Unclassified | Class::NotPersonal => {}
            }
        }
    }
}

/// Fails on the `unclassified` columns, or warns of them.
fn refuse_unclassified(
    policy: UnclassifiedPolicy,
    unclassified: Unclassified,
) -> Result<(), MaskError> {
    if unclassified.is_empty() {
        return Ok(());
    }
    match policy {
        UnclassifiedPolicy::Fail => Err(MaskError::Unclassified(unclassified)),
        UnclassifiedPolicy::Warn => {
            tracing::warn!("{}", unclassified.warning());
            Ok(())
        }
    }
}
