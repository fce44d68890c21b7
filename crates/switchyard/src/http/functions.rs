//! Admin routes of source functions: the function log, the function dead letters, and a
//! test run of a saved request (Segment's editor "Run"; nothing is stored).

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::functions::saved;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
}

fn with_function(state: &AppState, id: &str) -> Result<(), ApiError> {
    if state.webhooks.pool.has_function(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "source {id:?} has no function"
        )))
    }
}

pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    with_function(&state, &id)?;
    let runs = state.webhooks.logs.recent(&id, super::page_limit(q.limit)?);
    Ok(Json(json!({ "runs": runs })))
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    with_function(&state, &id)?;
    let dead = state
        .webhooks
        .store
        .dead_letters(&id, super::page_limit(q.limit)?)
        .map_err(|e| ApiError::internal("storage_error", e))?;
    // A token may sit in the path (`/webhooks/{id}/{token}`): redact it like the query.
    let token = state.config.sources.iter().find_map(|s| match &s.kind {
        crate::config::SourceKind::Webhook(w) if s.id == id => w.token.clone(),
        _ => None,
    });
    let shown: Vec<Value> = dead
        .into_iter()
        .map(|r| {
            let mut url = crate::redact::url(&r.url);
            if let Some(t) = &token {
                url = url.replace(t.as_str(), &crate::redact::redacted(t));
            }
            json!({
                "id": r.id,
                "received_at_ms": r.received_ms,
                "attempts": r.attempts,
                "reason": r.last_error,
                "url": url,
                "headers": r.headers,
                "body": r.body,
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": shown })))
}

pub async fn test_function(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<saved::Report>, ApiError> {
    with_function(&state, &id)?;
    let bytes =
        crate::ingest::body::read_limited(&headers, body, state.config.functions.max_body).await?;
    let req = saved::parse(&bytes, &id);
    let shown_secrets = state
        .config
        .sources
        .iter()
        .find_map(|s| match &s.kind {
            crate::config::SourceKind::Webhook(w) if s.id == id => {
                Some(crate::webhooks::secrets::of_request(w, &req))
            }
            _ => None,
        })
        .unwrap_or_default();
    let mut outcome = state
        .webhooks
        .pool
        .run(&id, std::sync::Arc::new(req))
        .await
        .map_err(|e| ApiError::unavailable("functions_busy", e.to_string()))?;
    // What the run printed or threw shows no secret of the request or the source.
    let scrub = |t: &str| crate::webhooks::secrets::scrub(t, &shown_secrets);
    outcome
        .logs
        .iter_mut()
        .for_each(|l| l.message = scrub(&l.message));
    if let Some(e) = &mut outcome.error {
        e.message = scrub(&e.message);
        e.stack = scrub(&e.stack);
    }
    Ok(Json(outcome.into()))
}
