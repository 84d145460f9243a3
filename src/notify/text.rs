//! The plain-text rendering of an outline, for the operator (`run`, `status`) and the summary
//! email's text part: the title, then each section under its title, indented, its rows aligned
//! in columns and its commands indented further.

use crate::report::outline::{Line, Outline};

pub fn render(outline: &Outline) -> String {
    let mut out = format!("{}\n", outline.title);
    for section in &outline.sections {
        out.push('\n');
        if !section.title.is_empty() {
            out.push_str(&format!("{}\n", section.title));
        }
        let indent = if section.title.is_empty() { "" } else { "  " };
        let widths = column_widths(&section.lines);
        for line in &section.lines {
            match line {
                Line::Text(t) => out.push_str(&format!("{indent}{t}\n")),
                Line::Command(c) => {
                    for line in c.lines() {
                        out.push_str(&format!("{indent}    {line}\n"));
                    }
                }
                Line::Row(cells) => {
                    let mut cols: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect();
                    if let Some(last) = cols.last_mut() {
                        *last = last.trim_end().to_owned();
                    }
                    out.push_str(&format!("{indent}{}\n", cols.join("  ")));
                }
            }
        }
    }
    out
}

/// The width of each column: its longest cell among the section's rows.
fn column_widths(lines: &[Line]) -> Vec<usize> {
    let mut widths = Vec::new();
    for line in lines {
        if let Line::Row(cells) = line {
            widths.resize(widths.len().max(cells.len()), 0);
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    widths
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_aligns_rows_and_indents_commands() {
        assert_eq!(
            super::render(&crate::report::outline::example()),
            "x\n\nT\n  a       <b>\n  longer  c & d\n      staging-refresh run\n"
        );
    }
}
