//! `GET /api/v1/events/{messageId}?source=ID`: an event's whole story — the event as
//! stored, the source-function run that emitted it (if any), which destinations and mappings
//! it matched, and every attempt at each.

use axum::Json;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::config::DestinationConfig;
use crate::redact;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LineageQuery {
    source: Option<String>,
}

pub async fn event(
    State(state): State<AppState>,
    Path(message_id): Path<String>,
    Query(q): Query<LineageQuery>,
) -> Result<Response, ApiError> {
    let records = state.recent.find(q.source.as_deref(), &message_id);
    let accepted = records
        .iter()
        .find(|r| r.status == crate::log::record::Kind::Accepted);
    let event: Option<Value> = accepted.and_then(|r| serde_json::from_slice(&r.event).ok());
    let env = accepted.map(|r| r.environment.to_string());
    let source = accepted.map(|r| r.source.to_string()).or(q.source.clone());
    let mut dests = Vec::new();
    for d in &state.config.destinations {
        dests.push(
            destination(
                &state,
                d,
                &message_id,
                event.as_ref(),
                source.as_deref(),
                env.as_deref(),
            )
            .await?,
        );
    }
    let attempted = dests
        .iter()
        .any(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()));
    if records.is_empty() && !attempted {
        return Err(ApiError::not_found(format!(
            "no recent record of messageId {message_id:?}"
        )));
    }
    let history: Vec<_> = records.iter().map(|r| r.view()).collect();
    let function_run = source
        .as_deref()
        .and_then(|s| state.webhooks.logs.find(s, &message_id));
    // Serialised straight from the views: a record's raw JSON is copied, never re-parsed.
    let view = LineageView {
        message_id: &message_id,
        event,
        records: history,
        function_run,
        destinations: dests,
    };
    Ok(Json(view).into_response())
}

#[derive(serde::Serialize)]
struct LineageView<'a> {
    message_id: &'a str,
    event: Option<Value>,
    records: Vec<crate::recent::EventView<'a>>,
    function_run: Option<crate::functions::logs::RunLog>,
    destinations: Vec<Value>,
}

async fn destination(
    state: &AppState,
    d: &DestinationConfig,
    message_id: &str,
    event: Option<&Value>,
    source: Option<&str>,
    env: Option<&str>,
) -> Result<Value, ApiError> {
    let wanted = match (event, source, env) {
        (Some(ev), Some(s), Some(e)) => {
            d.wants(s, e) && d.subscribe.as_ref().is_none_or(|f| f.matches(ev))
        }
        _ => false,
    };
    let mut view = json!({"id": d.id, "matched": wanted});
    let Some((cfg, _)) = d.kind.delivered() else {
        view["type"] = json!("file");
        return Ok(view);
    };
    view["type"] = json!("webhook");
    let mappings: Vec<Value> = cfg
        .mappings
        .iter()
        .map(|m| {
            let enabled = env.is_some_and(|e| m.enabled.for_environment(e));
            let matched = wanted && enabled && event.is_some_and(|ev| m.subscribe.matches(ev));
            json!({"name": m.name, "subscribe": m.subscribe.source(), "enabled": enabled, "matched": matched})
        })
        .collect();
    let (store, dest, mid) = (state.store.clone(), d.id.clone(), message_id.to_owned());
    let crate::delivery::store::Lineage {
        attempts,
        retries,
        dead,
    } = tokio::task::spawn_blocking(move || store.lineage(&dest, &mid))
        .await
        .map_err(|e| ApiError::internal("store_failed", e))?
        .map_err(|e| ApiError::internal("store_failed", e))?;
    view["mappings"] = json!(mappings);
    view["attempts"] = json!(attempts.iter().map(|a| json!({"mapping": a.mapping, "at_ms": a.at_ms, "url": redact::url(&a.url), "status": a.status,
        "latency_ms": a.latency_ms, "error": a.error, "outcome": a.outcome, "response": a.response})).collect::<Vec<_>>());
    view["retry_pending"] = json!(retries.iter().map(|p| json!({"mapping": p.mapping, "attempts": p.attempts, "next_at_ms": p.next_at_ms})).collect::<Vec<_>>());
    view["dead_letters"] = json!(
        dead.iter()
            .map(
                |x| json!({"id": x.delivery.id, "mapping": x.delivery.mapping, "reason": x.reason})
            )
            .collect::<Vec<_>>()
    );
    Ok(view)
}
