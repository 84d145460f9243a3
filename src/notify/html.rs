//! The HTML rendering of an outline, for the summary email's HTML part: sections as headings,
//! sentences as paragraphs, commands as code blocks, consecutive rows as one table, the title
//! on a band coloured by the run's severity.

use crate::report::Severity;
use crate::report::outline::{Line, Outline};

/// The band's colour: green, amber, red (the webhooks' colours too).
pub fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "#2e7d32",
        Severity::Warning => "#b26a00",
        Severity::Failed => "#c62828",
    }
}

/// Counts and durations line up on the right.
fn is_number(cell: &str) -> bool {
    cell.starts_with(|c: char| c.is_ascii_digit())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(outline: &Outline) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n\
         <body style=\"font-family: sans-serif\">\n\
         <h2 style=\"background: {c}; color: #ffffff; padding: 0.5em\">{t}</h2>\n",
        t = escape(&outline.title),
        c = colour(outline.severity)
    );
    for section in &outline.sections {
        if !section.title.is_empty() {
            out.push_str(&format!("<h3>{}</h3>\n", escape(section.title)));
        }
        let mut in_table = false;
        for line in &section.lines {
            let is_row = matches!(line, Line::Row(_));
            if is_row != in_table {
                out.push_str(if is_row { "<table>\n" } else { "</table>\n" });
                in_table = is_row;
            }
            match line {
                Line::Text(t) => out.push_str(&format!("<p>{}</p>\n", escape(t))),
                Line::Command(c) => {
                    out.push_str(&format!("<pre><code>{}</code></pre>\n", escape(c)))
                }
                Line::Row(cells) => {
                    out.push_str("<tr>");
                    for c in cells {
                        let align = if is_number(c) { "right" } else { "left" };
                        out.push_str(&format!(
                            "<td style=\"padding-right: 1em; text-align: {align}\">{}</td>",
                            escape(c)
                        ));
                    }
                    out.push_str("</tr>\n");
                }
            }
        }
        if in_table {
            out.push_str("</table>\n");
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_escapes_and_closes_tables() {
        let html = super::render(&crate::report::outline::example());
        assert!(
            html.contains("<td style=\"padding-right: 1em; text-align: left\">&lt;b&gt;</td>"),
            "{html}"
        );
        assert!(html.contains("c &amp; d"));
        assert!(
            html.contains("</table>\n<pre><code>staging-refresh run</code></pre>"),
            "{html}"
        );
    }
}
