//! The Segment HTTP Tracking API (`/v1/*`): read the body, authenticate the write key,
//! normalise each event, and answer only once the group commit holding the request is
//! durable. Per-event rejections never fail the request (docs/wire.md#answers).

mod auth;
pub mod body;
mod limits;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{self, EventType, RequestContext};
use crate::http::ApiError;
use crate::log::LogError;
use crate::log::record::{Entry, Kind, Record};
use crate::recent::RecentEvent;
use crate::state::AppState;
use crate::telemetry::metrics;
pub use limits::Admission;

/// Elements past this index of a batch are rejected, as one entry for them all.
pub const MAX_BATCH_EVENTS: usize = 2500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Single(EventType),
    Batch,
    /// analytics.js telemetry: accepted and discarded.
    Metrics,
}

fn route(kind: &str) -> Option<Route> {
    match kind {
        "batch" | "b" | "import" => Some(Route::Batch),
        "m" => Some(Route::Metrics),
        other => EventType::from_path(other).map(Route::Single),
    }
}

/// A request body's top level, parsed once; events stay raw.
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow, default)]
    pub batch: Option<&'a RawValue>,
    #[serde(rename = "writeKey", borrow, default)]
    pub write_key: Option<&'a RawValue>,
    #[serde(rename = "sentAt", borrow, default)]
    pub sent_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub integrations: Option<&'a RawValue>,
}

pub async fn ingest(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let route =
        route(&kind).ok_or_else(|| ApiError::not_found(format!("no ingest route /v1/{kind}")))?;
    let success = Json(serde_json::json!({"success": true}));
    if route == Route::Metrics {
        return Ok(success);
    }
    state.check_accepting()?;
    // The request's one clock read: its events' receivedAt and its rate-limit decision.
    let received_ms = state.clock.now_ms();
    let received_at = crate::clock::utc(received_ms);
    let bytes = body::read(&headers, body).await?;
    // serde would also read a struct from an array, by position; a body must be an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body is not a JSON object",
        ));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not a JSON object: {e}"),
        )
    })?;
    let header_key = auth::header_key(&headers)?;
    let body_key = envelope
        .write_key
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok());
    let (source, environment) = auth::resolve(
        &state.config.write_keys,
        header_key.as_deref(),
        body_key.as_deref(),
    )?;
    let elements: Vec<&RawValue> = match route {
        Route::Batch => {
            let raw = envelope.batch.ok_or_else(|| {
                ApiError::bad_request("missing_batch", "a batch body needs a \"batch\" array")
            })?;
            serde_json::from_str(raw.get())
                .map_err(|_| ApiError::bad_request("invalid_batch", "\"batch\" must be an array"))?
        }
        _ => vec![
            serde_json::from_slice::<&RawValue>(&bytes)
                .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?,
        ],
    };
    state
        .admission
        .admit(&state, source, elements.len(), received_ms)?;
    state
        .metrics
        .ingest_bytes
        .get_or_create(&metrics::source(source))
        .inc_by(bytes.len() as u64);
    let cx = RequestContext {
        source,
        environment,
        received_at,
        path_type: match route {
            Route::Single(t) => Some(t),
            _ => None,
        },
        sent_at: envelope.sent_at,
        context: if route == Route::Batch {
            envelope.context
        } else {
            None
        },
        integrations: if route == Route::Batch {
            envelope.integrations
        } else {
            None
        },
    };
    let entries = to_entries(&elements, &cx);
    if state.config.server.bench_no_store {
        return Ok(success);
    }
    let too_large = single_too_large(route, &entries);
    let entries = append(&state, entries).await?;
    record(&state, source, entries);
    count_folded(&state, source, elements.len());
    match too_large {
        Some(message) => Err(ApiError::bad_request("event_too_large", message)),
        None => Ok(success),
    }
}

/// A single-event call (`/v1/track`, …) over the per-call limit answers 400, as Segment's
/// HTTP API does for a large payload; inside a batch an oversized element is rejected on its
/// own and the request answers 200. Either way the rejection is logged and shown.
fn single_too_large(route: Route, entries: &[Entry]) -> Option<String> {
    let [e] = entries else { return None };
    let message = e.reason.strip_prefix("event_too_large: ")?;
    (matches!(route, Route::Single(_)) && e.kind == Kind::Rejected).then(|| message.to_owned())
}

/// Appends to the log and waits until the group holding these entries is durable.
pub(crate) async fn append(state: &AppState, entries: Vec<Entry>) -> Result<Vec<Entry>, ApiError> {
    state.log.append(entries).await.map_err(|e| match e {
        LogError::Saturated => {
            state
                .metrics
                .throttled
                .get_or_create(&metrics::reason("queue_full"))
                .inc();
            ApiError::too_many("queue_full", "the write queue is full; retry shortly", 1)
        }
        LogError::Closed => ApiError::unavailable("draining", "the server is shutting down"),
        LogError::Io(detail) => ApiError::internal("storage_error", detail),
    })
}

pub(crate) fn to_entries(elements: &[&RawValue], cx: &RequestContext<'_>) -> Vec<Entry> {
    let received_ms = (cx.received_at.unix_timestamp_nanos() / 1_000_000) as i64;
    let (source, environment): (Arc<str>, Arc<str>) = (cx.source.into(), cx.environment.into());
    let entry = |kind, message_id: String, reason: String, body: Vec<u8>| Entry {
        kind,
        received_ms,
        source: source.clone(),
        environment: environment.clone(),
        message_id,
        reason,
        body,
    };
    // The envelope's context and integrations are merged into every element, one level down.
    let envelope_problem = [("context", cx.context), ("integrations", cx.integrations)]
        .into_iter()
        .find_map(|(name, raw)| {
            let e = event::readable::check(raw?.get(), event::readable::MAX_DEPTH - 1).err()?;
            Some(event::unreadable(format!("the request's {name}: {e}")))
        });
    // Elements past the 2,500th become one rejected entry for them all (showing the first),
    // so a body of 250,000 tiny elements costs one log record, not 250,000.
    let past_limit = elements.len().saturating_sub(MAX_BATCH_EVENTS);
    elements
        .iter()
        .take(MAX_BATCH_EVENTS + 1)
        .enumerate()
        .map(|(i, raw)| {
            if i >= MAX_BATCH_EVENTS {
                let reason = format!("batch_too_large: only the first {MAX_BATCH_EVENTS} events of a batch are accepted; {past_limit} more were rejected (the first is shown)");
                return entry(Kind::Rejected, String::new(), reason, event::rejected_display(raw.get()));
            }
            if let Some(r) = &envelope_problem {
                let reason = format!("{}: {}", r.code, r.message);
                return entry(Kind::Rejected, String::new(), reason, event::rejected_display(raw.get()));
            }
            match event::normalize(raw, cx) {
                Ok(n) => entry(Kind::Accepted, n.message_id, n.warnings.join("; "), n.body),
                Err(r) => {
                    let reason = format!("{}: {}", r.code, r.message);
                    entry(Kind::Rejected, r.message_id.unwrap_or_default(), reason, event::rejected_display(raw.get()))
                }
            }
        })
        .collect()
}

/// Counts the elements past a batch's limit that `to_entries` folded into its one
/// `batch_too_large` entry (which `record` counts once): the counter counts every element.
pub(crate) fn count_folded(state: &AppState, source: &str, elements: usize) {
    let folded = elements.saturating_sub(MAX_BATCH_EVENTS + 1) as u64;
    if folded > 0 {
        let labels = metrics::source_reason(source, "batch_too_large");
        state.metrics.rejected.get_or_create(&labels).inc_by(folded);
    }
}

/// Counts and shows what happened to each event (all entries share one source).
pub(crate) fn record(state: &AppState, source: &str, entries: Vec<Entry>) {
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut rejected: HashMap<&str, u64> = HashMap::new();
    for e in &entries {
        match e.kind {
            Kind::Accepted => accepted += 1,
            Kind::Duplicate => duplicates += 1,
            Kind::Rejected | Kind::Unverified => {
                let slug = e.reason.split(':').next().unwrap_or("rejected");
                *rejected.entry(slug).or_default() += 1;
            }
            Kind::Object => {}
        }
    }
    let labels = metrics::source(source);
    state
        .metrics
        .accepted
        .get_or_create(&labels)
        .inc_by(accepted);
    state
        .metrics
        .duplicates
        .get_or_create(&labels)
        .inc_by(duplicates);
    for (slug, n) in rejected {
        let labels = metrics::source_reason(source, slug);
        state.metrics.rejected.get_or_create(&labels).inc_by(n);
    }
    // Objects go only to warehouses, not to the debugger.
    let events: Vec<RecentEvent> = entries
        .into_iter()
        .filter(|e| e.kind != Kind::Object)
        .map(|entry| RecentEvent::from_record(Record { seq: 0, entry }))
        .collect();
    state.recent.push_all(source, events.into_iter());
}
