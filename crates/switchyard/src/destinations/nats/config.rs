//! The `nats` destination's `settings:` as written and compiled into the delivery engine's
//! one route and where it publishes.

use serde::Deserialize;

use crate::config::WebhookConfig;
use crate::config::compile::Cx;
use crate::config::raw::RawDestination;
use crate::delivery::config::{delivery_and_retry, fixed_route};

/// Where a `nats` destination publishes.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    pub url: String,
    /// A subject template such as `events.{{type}}`.
    pub subject: String,
    /// Plain (at-most-once) publishes instead of JetStream.
    pub core: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNatsSettings {
    url: Option<String>,
    subject: String,
    core: Option<bool>,
}

/// The `nats` destination: the delivery engine with one route that publishes each whole
/// event to a subject rendered from a template.
pub(crate) fn compile_nats(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
) -> Option<(WebhookConfig, NatsTarget)> {
    let spath = format!("{path}.settings");
    if raw.mappings.is_some() {
        cx.err(
            format!("{path}.mappings"),
            "a nats destination publishes whole events and takes no mappings",
        );
    }
    let s: RawNatsSettings = cx.section(raw.settings.as_ref(), &spath)?;
    let url = s.url.unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let sample = super::publish::render_subject(&s.subject, &serde_json::json!({}));
    let valid = !sample.is_empty()
        && sample
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        && !sample.contains(['*', '>']);
    if !valid {
        cx.err(
            format!("{spath}.subject"),
            format!(
                "{:?} is not a valid subject template (dot-separated tokens, no wildcards)",
                s.subject
            ),
        );
    }
    let settings = delivery_and_retry(cx, raw, path);
    let engine = fixed_route("nats", &url, "", 0, settings)?;
    let nats = NatsTarget {
        url,
        subject: s.subject,
        core: s.core.unwrap_or(false),
    };
    Some((engine, nats))
}
