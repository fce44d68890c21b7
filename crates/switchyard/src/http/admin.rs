//! Admin API handlers: recent events, inspect, metrics, health.

use axum::Json;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::inspect;
use crate::log::record::Kind;
use crate::state::{AppState, Phase};

#[derive(Deserialize)]
pub struct EventsQuery {
    limit: Option<usize>,
    status: Option<String>,
    before: Option<u64>,
}

pub async fn source_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    if !state.recent.has_source(&id) {
        return Err(ApiError::not_found(format!("no source {id:?}")));
    }
    let limit = super::page_limit(q.limit)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("accepted") => Some(Kind::Accepted),
        Some("rejected") => Some(Kind::Rejected),
        Some("duplicate") => Some(Kind::Duplicate),
        Some("unverified") => Some(Kind::Unverified),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("unknown status {other:?}"),
            ));
        }
    };
    let (page, next) = state.recent.page(&id, limit, status, q.before);
    // Serialised straight from the views: an event's raw JSON is copied, never re-parsed.
    let events: Vec<_> = page.iter().map(|e| e.view()).collect();
    Ok(Json(EventsPage { events, next }).into_response())
}

#[derive(serde::Serialize)]
struct EventsPage<'a> {
    events: Vec<crate::recent::EventView<'a>>,
    next: Option<u64>,
}

pub async fn inspect(State(state): State<AppState>) -> Result<Json<inspect::Report>, ApiError> {
    let committed = *state.log.committed().borrow();
    let mut problems = Vec::new();
    let (failed_commits, last_failure) = state.log.failures();
    if !state.log.healthy() {
        let why = last_failure.as_deref().unwrap_or("see the server log");
        problems.push(format!(
            "log commits are failing now ({failed_commits} since start-up; last: {why}); ingest answers 500 until one succeeds"
        ));
    } else if failed_commits > 0 {
        problems.push(format!(
            "{failed_commits} log commits failed since start-up and were answered with errors; commits succeed again"
        ));
    }
    if state.recovery.truncated_bytes > 0 {
        problems.push(format!(
            "start-up recovery cut a damaged tail of {} bytes (kept in log/quarantine/)",
            state.recovery.truncated_bytes
        ));
    }
    let live = inspect::Live {
        end: committed.end,
        next_seq: committed.next_seq,
        problems,
        now_ms: state.clock.now_ms(),
    };
    let dests: Vec<_> = state
        .destinations
        .iter()
        .map(|d| (d.id.clone(), d.last_error()))
        .collect();
    let dir = state.config.server.data_dir.clone();
    let store = state.store.clone();
    let profiles = state
        .config
        .storage
        .profiles
        .then(|| state.profiles.clone());
    let report = tokio::task::spawn_blocking(move || {
        inspect::report(&dir, &dests, Some(live)).map(|mut r| {
            r.add_delivery_counts(&store);
            if let Some(p) = profiles {
                r.add_profiles(&p);
            }
            r
        })
    })
    .await
    .map_err(|e| ApiError::internal("inspect_failed", e))?
    .map_err(|e| ApiError::internal("inspect_failed", e))?;
    let mut report = report;
    for d in &mut report.destinations {
        if let Some(s) = state.destinations.iter().find(|s| s.id == d.id) {
            d.replaying = s.replaying.load(std::sync::atomic::Ordering::Acquire);
            d.replayed = s.replayed.load(std::sync::atomic::Ordering::Acquire);
        }
    }
    Ok(Json(report))
}

/// `POST /api/v1/test-mapping`: one `{"subscribe", "mapping", "event"}` in, one result out.
pub async fn test_mapping(
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<crate::mapping::TestResult>, ApiError> {
    let bytes = crate::ingest::body::read(&headers, body).await?;
    let input: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    Ok(Json(crate::mapping::test_mapping(&input)))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let committed = *state.log.committed().borrow();
    for d in &state.destinations {
        let backlog = committed.next_seq.saturating_sub(d.next_seq());
        state
            .metrics
            .backlog
            .get_or_create(&crate::telemetry::metrics::destination(&d.id))
            .set(backlog as i64);
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let phase = state.phase();
    let healthy = state.log.healthy();
    let ready = phase == Phase::Ready && healthy;
    // Readers of the log whose last read failed (each retries with backoff; the error is in
    // `inspect` and the log). Named only: this route needs no token.
    let failing: Vec<String> = state.log.readers().failing().into_keys().collect();
    let body = Json(json!({
        "ready": ready,
        "phase": format!("{phase:?}").to_lowercase(),
        "log_healthy": healthy,
        "log_readers_failing": failing,
    }));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}
