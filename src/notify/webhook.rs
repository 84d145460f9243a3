//! Chat webhooks: the recipients' outline, shortened to what a chat message needs (outcome,
//! snapshot and its age, duration and maintenance window, warnings, the error, what to do),
//! as Slack/Mattermost attachments or a Teams MessageCard; `json` receivers get the whole
//! outline as a document. Posted with a timeout and one retry. The URL is a secret: no error
//! or log line quotes it, a webhook is named by its place in the config and its kind.

use crate::config::ExposeSecret;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use super::html::colour;
use crate::config::{WebhookConfig, WebhookKind};
use crate::report::outline::{Line, Outline};
use crate::staging::backend::{HttpClient, http_client};

/// The pause before the one retry.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("notify.webhook[{index}] ({kind}): {message}")]
pub struct WebhookError {
    pub index: usize,
    pub kind: WebhookKind,
    pub message: String,
}

/// The short form of an outline: facts (name, value) and lines of text.
struct Brief {
    facts: Vec<(String, String)>,
    lines: Vec<String>,
}

/// The row of section `section` whose first cell is `name`: its other cells.
fn row(outline: &Outline, section: &str, name: &str) -> Option<String> {
    let section = outline.sections.iter().find(|s| s.title == section)?;
    section.lines.iter().find_map(|line| match line {
        Line::Row(cells) if cells.first().is_some_and(|c| c == name) => Some(cells[1..].join(" ")),
        _ => None,
    })
}

fn brief(outline: &Outline) -> Brief {
    let facts = [
        ("snapshot", "Snapshot", "name"),
        ("taken at", "Snapshot", "taken at"),
        ("duration", "Timing", "total"),
        ("maintenance window", "Timing", "maintenance window"),
    ]
    .into_iter()
    .filter_map(|(label, section, name)| Some((label.to_owned(), row(outline, section, name)?)))
    .collect();
    // The opening (what staging serves now), then what needs a person.
    let opening = outline.sections.first().into_iter();
    let needs_a_person = outline
        .sections
        .iter()
        .filter(|s| ["Warnings", "Error", "What to do"].contains(&s.title));
    let lines = opening
        .chain(needs_a_person)
        .map(|section| {
            let body: Vec<String> = section
                .lines
                .iter()
                .map(|line| match line {
                    Line::Text(t) => t.clone(),
                    Line::Command(c) => format!("`{c}`"),
                    Line::Row(cells) => cells.join(" "),
                })
                .collect();
            match section.title {
                "" => body.join(" "),
                title => format!("{title}: {}", body.join(" ")),
            }
        })
        .collect();
    Brief { facts, lines }
}

/// The message `kind` expects for `outline`.
pub fn payload(kind: WebhookKind, outline: &Outline) -> Value {
    let colour = colour(outline.severity);
    let brief = || brief(outline);
    match kind {
        WebhookKind::Json => serde_json::to_value(outline).expect("an outline serializes"),
        WebhookKind::Slack | WebhookKind::Mattermost => {
            let brief = brief();
            json!({
                "text": outline.headline,
                "attachments": [{
                    "fallback": outline.headline,
                    "color": colour,
                    "title": outline.title,
                    "text": brief.lines.join("\n"),
                    "fields": brief.facts.iter().map(|(name, value)| json!({
                        "title": name, "value": value, "short": true,
                    })).collect::<Vec<_>>(),
                }],
            })
        }
        WebhookKind::Teams => {
            let brief = brief();
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "themeColor": colour.trim_start_matches('#'),
                "summary": outline.headline,
                "title": outline.title,
                "sections": [{
                    "text": brief.lines.join("\n\n"),
                    "facts": brief.facts.iter().map(|(name, value)| json!({
                        "name": name, "value": value,
                    })).collect::<Vec<_>>(),
                }],
            })
        }
    }
}

/// Posts the message for `outline` to webhook `index`, retrying once.
pub async fn send(
    index: usize,
    webhook: &WebhookConfig,
    outline: &Outline,
) -> Result<(), WebhookError> {
    let error = |message: String| WebhookError {
        index,
        kind: webhook.kind,
        message,
    };
    let client: HttpClient<Full<Bytes>> =
        http_client().map_err(|e| error(format!("no TLS roots: {e}")))?;
    let uri: hyper::Uri = webhook
        .url
        .expose_secret()
        .parse()
        .map_err(|_| error("the url is not a valid URL".into()))?;
    let body = Bytes::from(payload(webhook.kind, outline).to_string());
    let attempt = || async {
        let request = hyper::Request::post(uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .expect("a valid request");
        match tokio::time::timeout(webhook.timeout, client.request(request)).await {
            Err(_) => Err(format!("no answer within {:?}", webhook.timeout)),
            // The client error's own text names its kind (connect, ...), never the URL.
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(format!("answered {}", response.status())),
        }
    };
    if let Err(first) = attempt().await {
        tracing::info!(index, kind = %webhook.kind, error = %first, "webhook failed; retrying once");
        tokio::time::sleep(RETRY_AFTER).await;
        attempt()
            .await
            .map_err(|last| error(format!("{last} (and before the retry: {first})")))?;
    }
    Ok(())
}
