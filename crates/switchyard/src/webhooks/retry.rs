//! `RetryError` (docs/functions.md#outcomes): the request is stored durably before the caller gets
//! 202, then re-run with `functions.retry` (6 attempts in all by default; the first delay is random
//! in [initial, 3×initial], doubling after, capped at `max`). A run that still fails, or fails with
//! anything but `RetryError` or a timeout, moves to the source's function dead letters.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::secrets;
use super::store::StoredRequest;
use super::{Call, finish_run, request_key};
use crate::config::{FunctionRetry, SourceKind};
use crate::functions::{ErrorKind, FnRequest, Outcome};
use crate::http::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics;

fn delay(attempt: u32, retry: &FunctionRetry) -> Duration {
    let base = retry
        .initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    base.mul_f64(1.0 + 2.0 * fastrand::f64()).min(retry.max)
}

fn message(outcome: &Outcome) -> String {
    outcome
        .error
        .as_ref()
        .map_or_else(String::new, |e| format!("{}: {}", e.name, e.message))
}

/// Stores the request of a run that threw `RetryError`; 202 once it is durable. What is stored
/// keeps no secret (docs/security.md#secrets): secret-bearing headers and the body's top-level
/// `writeKey` are dropped, and the source's token in the URL is redacted, so a re-run sees the
/// request without them.
pub(super) fn store_first(
    call: &Call<'_>,
    req: &FnRequest,
    outcome: &Outcome,
) -> Result<Response, ApiError> {
    let retry = &call.state.config.functions.retry;
    let keys = secrets::of_request(call.src, req);
    let mut r = StoredRequest {
        id: 0,
        source: call.id.to_owned(),
        body: secrets::without_write_key(&req.body).unwrap_or_else(|| req.body.clone()),
        headers: req
            .headers
            .iter()
            .filter(|(k, _)| !crate::redact::is_secret_header(k))
            .cloned()
            .collect(),
        url: secrets::stored_url(call.src, &req.url),
        received_ms: call.received_ms(),
        attempts: 1,
        next_ms: call.state.clock.now_ms() + delay(1, retry).as_millis() as i64,
        last_error: secrets::scrub(&message(outcome), &keys),
    };
    if retry.attempts <= 1 {
        return dead(call.state, &r).map(|()| {
            accepted(
                &r,
                "the function asked for a retry, but functions.retry.attempts is 1",
            )
        });
    }
    call.state
        .webhooks
        .store
        .put_retry(&mut r)
        .map_err(|e| ApiError::internal("storage_error", e))?;
    Ok(accepted(&r, "stored; the function will be re-run"))
}

fn accepted(r: &StoredRequest, message: &str) -> Response {
    let body =
        json!({"success": true, "retry": {"id": r.id, "message": message, "reason": r.last_error}});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn dead(state: &AppState, r: &StoredRequest) -> Result<(), ApiError> {
    state
        .metrics
        .dead_letters
        .get_or_create(&metrics::destination(&format!("function:{}", r.source)))
        .inc();
    tracing::warn!(source = %r.source, reason = %r.last_error, attempts = r.attempts, "function request dead-lettered");
    state
        .webhooks
        .store
        .dead_letter(r)
        .map_err(|e| ApiError::internal("storage_error", e))
}

/// Stored retries taken per tick at most; the rest wait for the next.
const DUE_PER_TICK: usize = 256;

/// Re-runs due requests until cancelled.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let tick = (state.config.functions.retry.initial / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        // Due by the injected clock, so tests move time instead of waiting for it.
        let (store, now) = (state.webhooks.store.clone(), state.clock.now_ms());
        let due = match tokio::task::spawn_blocking(move || store.due(now, DUE_PER_TICK)).await {
            Ok(Ok(due)) => due,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read function retries");
                continue;
            }
            Err(_) => return,
        };
        for r in due {
            if cancel.is_cancelled() {
                return;
            }
            if let Err(e) = rerun(&state, r).await {
                tracing::error!(error = %e.message, "function retry could not be stored");
            }
        }
    }
}

async fn rerun(state: &AppState, mut r: StoredRequest) -> Result<(), ApiError> {
    let src = state.config.sources.iter().find_map(|s| match &s.kind {
        SourceKind::Webhook(w) if s.id == r.source && w.function.is_some() => Some(&**w),
        _ => None,
    });
    let Some(src) = src else {
        r.last_error = "the source no longer has a function".into();
        return dead(state, &r);
    };
    let received_at =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.received_ms) * 1_000_000)
            .unwrap_or_else(|_| state.clock.now_utc());
    let call = Call {
        state,
        id: &r.source,
        src,
        received_at,
    };
    let req = std::sync::Arc::new(FnRequest {
        body: r.body.clone(),
        headers: r.headers.clone(),
        url: r.url.clone(),
    });
    let outcome = match state.webhooks.pool.run(&r.source, req.clone()).await {
        Ok(o) => o,
        Err(_) => return Ok(()), // busy or stopping: the request stays due
    };
    let shown_secrets = secrets::of_request(src, &req);
    finish_run(&call, &outcome, r.body.as_bytes(), "retry", &shown_secrets).await?;
    r.attempts += 1;
    let retry = &state.config.functions.retry;
    match outcome.error.as_ref().map(|e| e.kind) {
        None => {
            if let Some(i) = &src.idempotency
                && let Some(k) = request_key(&call, &i.key, r.body.as_bytes())
            {
                state
                    .webhooks
                    .guard
                    .record(k, call.received_ms() + i.window.as_millis() as i64);
            }
            state
                .webhooks
                .store
                .remove_retry(r.id)
                .map_err(|e| ApiError::internal("storage_error", e))
        }
        Some(ErrorKind::Retry | ErrorKind::Timeout) if r.attempts < retry.attempts => {
            r.last_error = secrets::scrub(&message(&outcome), &shown_secrets);
            r.next_ms = state.clock.now_ms() + delay(r.attempts, retry).as_millis() as i64;
            state
                .webhooks
                .store
                .put_retry(&mut r)
                .map_err(|e| ApiError::internal("storage_error", e))
        }
        Some(_) => {
            let why = secrets::scrub(&message(&outcome), &shown_secrets);
            r.last_error = format!("after {} runs: {why}", r.attempts);
            dead(state, &r)
        }
    }
}
