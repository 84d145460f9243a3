//! The gate before a table's first row: every column whose type can hold personal data has a
//! rule (its own table's, or the nearest parent's: [`TableShape::lineage`]), or
//! (`anonymize.unclassified = "fail"`) the run stops before anything is loaded, naming each
//! such column once (a partitioned table's columns by the partitioned table); every mask fits
//! its column ([`fit`]), or the run stops naming each that does not; no mask meets a generated
//! column, whose values the server computes. At the end of the dump, what the rules made of
//! its columns goes to verification and the report.

use crate::config::Unclassified as UnclassifiedPolicy;
use crate::config::masking::{Class, Mask, Rules};
use crate::table::{TableName, display_ident};

use super::Masked;
use super::error::{MaskError, Unclassified};
use super::fit::fit;
use super::shape::ColumnShape;
use super::tables::{TableShape, Tables, is_personal};

/// What the rules make of `column` of `table`: the run's gate, the report's classes and
/// `plan`/`rules` all classify through this.
pub fn classify<'r>(rules: &'r Rules, table: &TableShape, column: &ColumnShape) -> Class<'r> {
    rules.classify(table.lineage(), &column.name, is_personal(column))
}

/// The table a column of `table` is listed under: its topmost ancestor among `tables` that
/// has the column classified alike, else `table`; so a partitioned table's columns are
/// named once, not once per partition.
pub fn listed_under<'t>(
    rules: &Rules,
    tables: &'t Tables,
    table: &'t TableShape,
    column: &ColumnShape,
) -> &'t TableName {
    let class = classify(rules, table, column);
    table
        .parents
        .iter()
        .rev()
        .find(|parent| {
            tables.get(*parent).is_some_and(|p| {
                p.column(&column.name)
                    .is_some_and(|c| classify(rules, p, c) == class)
            })
        })
        .unwrap_or(&table.name)
}

/// Warns of the rules naming a column the dump's tables do not have (a typo, or a column
/// production dropped).
pub(super) fn warn_unknown_columns(rules: &Rules, tables: &Tables) {
    for (table, columns) in &rules.columns {
        for column in columns.keys() {
            let known = tables
                .get(table)
                .is_some_and(|t| t.column(column).is_some());
            if !known {
                tracing::warn!(
                    column = %format!("{table}.{}", display_ident(column)),
                    "a masking rule names a column the dump does not have"
                );
            }
        }
    }
}

/// Every personal column of `checked` has a rule, every mask fits its column
/// (`email_domain`: what masked emails end with) and no mask meets a generated column;
/// `tables` are every table known, for the names listed.
pub(super) fn check<'t>(
    rules: &Rules,
    tables: &Tables,
    checked: impl IntoIterator<Item = &'t TableShape>,
    email_domain: &str,
) -> Result<(), MaskError> {
    let mut unclassified = Unclassified::default();
    let mut misfit = Vec::new();
    for table in checked {
        let mut ruled = Vec::new();
        for column in &table.columns {
            match classify(rules, table, column) {
                Class::Ruled(mask, _) if column.generated && *mask != Mask::Keep => {
                    return Err(MaskError::Generated {
                        column: format!("{}.{}", table.name, display_ident(&column.name)),
                    });
                }
                Class::Ruled(mask, _) => ruled.push((column, mask)),
                Class::Unclassified => {
                    unclassified.push(
                        listed_under(rules, tables, table, column).to_string(),
                        format!("{} ({})", display_ident(&column.name), column.type_name),
                    );
                }
                Class::Emptied | Class::NotPersonal => {}
            }
        }
        misfit.extend(misfits(email_domain, &table.name, ruled));
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

/// The mask of each column `names` lists of `table` (`shape`, when known; unclassified
/// ones checked), `None` to keep.
pub(super) fn masks_of(
    rules: &Rules,
    table: &TableName,
    shape: Option<&TableShape>,
    names: &[String],
) -> Result<Vec<Option<Mask>>, MaskError> {
    let lineage: Vec<&TableName> = match shape {
        Some(shape) => shape.lineage().collect(),
        None => vec![table],
    };
    let mut unclassified = Unclassified::default();
    let masks = names
        .iter()
        .map(|name| match rules.mask(lineage.iter().copied(), name) {
            Some(Mask::Keep) => None,
            Some(mask) => Some(mask.clone()),
            None => {
                // A column the catalog did not describe: its type is unknown, so personal.
                let column = shape.and_then(|s| s.column(name));
                if column.is_none_or(is_personal) {
                    let ty = column.map_or("type unknown", |c| c.type_name.as_str());
                    unclassified.push(table.to_string(), format!("{} ({ty})", display_ident(name)));
                }
                None
            }
        })
        .collect();
    refuse_unclassified(rules.unclassified, unclassified)?;
    Ok(masks)
}

/// Notes in `masked` the column masks the dump's tables got (not `keep`; a partitioned
/// table's are its partitions', which hold its rows), and the personal-looking columns a
/// `keep` rule classified as not personal.
pub(super) fn note_classes(rules: &Rules, tables: &Tables, masked: &mut Masked) {
    for table in tables.values() {
        for column in &table.columns {
            match classify(rules, table, column) {
                Class::Ruled(Mask::Keep, _) => {
                    let kept = (
                        listed_under(rules, tables, table, column).clone(),
                        column.name.clone(),
                    );
                    if !masked.kept.contains(&kept) {
                        masked.kept.push(kept);
                    }
                }
                Class::Ruled(mask, _) if !table.partitioned => {
                    masked
                        .applied
                        .push((table.name.clone(), column.clone(), mask.clone()));
                }
                Class::Ruled(..) | Class::Emptied | Class::Unclassified | Class::NotPersonal => {}
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
