//! The `segment` destination's `settings:` as written and compiled into the delivery
//! engine's one route and where it forwards.

use serde::Deserialize;

use crate::config::compile::Cx;
use crate::config::raw::RawDestination;
use crate::config::{ServerConfig, WebhookConfig};
use crate::delivery::config::{check_literal_url, delivery_and_retry, fixed_route};

/// Where a `segment` destination forwards to.
#[derive(Clone)]
pub struct Forward {
    /// `<endpoint>/v1/batch`.
    pub batch_url: String,
    pub write_key: String,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forward({}, ***)", self.batch_url)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegmentSettings {
    endpoint: String,
    write_key: String,
    /// Events per forwarded request (default 100; 0 = one per request).
    batch_size: Option<u64>,
}

/// The `segment` destination: the webhook engine with one fixed route that forwards each
/// event, unchanged but for `context.switchyard` and `sentAt`, to `<endpoint>/v1/batch`.
pub(crate) fn compile_segment(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
    server: &ServerConfig,
) -> Option<(WebhookConfig, Forward)> {
    let spath = format!("{path}.settings");
    if raw.mappings.is_some() {
        cx.err(
            format!("{path}.mappings"),
            "a segment destination forwards whole events and takes no mappings",
        );
    }
    let s: RawSegmentSettings = cx.section(raw.settings.as_ref(), &spath)?;
    check_literal_url(cx, &s.endpoint, &format!("{spath}.endpoint"), server);
    if s.write_key.is_empty() {
        cx.err(format!("{spath}.write_key"), "is required");
    }
    let batch_size = s.batch_size.unwrap_or(100);
    if batch_size > 2500 {
        cx.err(
            format!("{spath}.batch_size"),
            "must be at most 2500 (the Tracking API's batch limit)",
        );
    }
    let settings = delivery_and_retry(cx, raw, path);
    let batch_url = format!("{}/v1/batch", s.endpoint.trim_end_matches('/'));
    let engine = fixed_route("forward", &batch_url, "POST", batch_size as usize, settings)?;
    let forward = Forward {
        batch_url,
        write_key: s.write_key,
    };
    Some((engine, forward))
}
