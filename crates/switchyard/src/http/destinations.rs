//! Destination routes: the delivery log, dead letters and their replay.

use axum::Json;
use axum::extract::State;

use super::extract::{JsonBody, Path, Query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::delivery::store::{Attempt, DeadLetter, DeliveryStore, LOG_DAMAGE, StoreError};
use crate::redact;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Page {
    limit: Option<usize>,
    before: Option<u64>,
}

fn known(state: &AppState, id: &str) -> Result<(), ApiError> {
    if state.destinations.iter().any(|d| d.id == id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no destination {id:?}")))
    }
}

fn time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    crate::event::timestamp::format(t)
}

fn attempt_view(a: &Attempt) -> Value {
    json!({"id": a.id, "at": time(a.at_ms), "source": a.source, "message_id": a.message_id, "mapping": a.mapping,
           "url": redact::url(&a.url), "status": a.status, "latency_ms": a.latency_ms, "error": a.error,
           "response": a.response, "outcome": a.outcome})
}

fn dead_letter_view(d: &DeadLetter) -> Value {
    let p = &d.delivery;
    if d.reason == LOG_DAMAGE {
        // Log records that could not be read: only their sequence numbers are known.
        return json!({"id": p.id, "reason": d.reason, "detail": d.detail, "dead_at": time(d.dead_at_ms),
               "source": null, "message_id": null, "mapping": null, "received_at": null,
               "log_seq": p.seq, "attempts": 0, "last_status": null, "last_error": null, "request": null});
    }
    if d.is_reference() {
        // A reference to the logged event (`backlog_overflow`): there is no request.
        return json!({"id": p.id, "reason": d.reason, "detail": d.detail, "dead_at": time(d.dead_at_ms),
               "source": p.source, "message_id": p.message_id, "mapping": p.mapping,
               "received_at": time(p.received_ms), "log_seq": p.seq, "attempts": p.attempts,
               "last_status": p.last_status, "last_error": p.last_error, "request": null});
    }
    let r = p.request.shown();
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, v)| json!([k, redact::header(k, v)]))
        .collect();
    json!({"id": p.id, "reason": d.reason, "dead_at": time(d.dead_at_ms), "source": p.source, "message_id": p.message_id,
           "mapping": p.mapping, "received_at": time(p.received_ms), "attempts": p.attempts, "last_status": p.last_status,
           "last_error": p.last_error, "request": {"method": r.method, "url": redact::url(&r.url),
           "headers": headers, "body": r.body}})
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("store_failed", e))?
        .map_err(|e| ApiError::internal("store_failed", e))
}

pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let fetch = |s: &DeliveryStore, id: &str, l, before| s.attempts(id, l, before);
    page(&state, id, p, "deliveries", fetch, |a| a.id, attempt_view).await
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let fetch = |s: &DeliveryStore, id: &str, l, before| s.dead_letters(id, l, before);
    page(
        &state,
        id,
        p,
        "dead_letters",
        fetch,
        |d| d.delivery.id,
        dead_letter_view,
    )
    .await
}

/// One page of a destination's list under `key`, newest first, with `next`: the `before` of
/// the page after it, when this one was full.
async fn page<T: Send + 'static>(
    state: &AppState,
    id: String,
    p: Page,
    key: &str,
    fetch: impl FnOnce(&DeliveryStore, &str, usize, Option<u64>) -> Result<Vec<T>, StoreError>
    + Send
    + 'static,
    id_of: fn(&T) -> u64,
    view: fn(&T) -> Value,
) -> Result<Json<Value>, ApiError> {
    known(state, &id)?;
    let (l, before, store) = (super::page_limit(p.limit)?, p.before, state.store.clone());
    let list = blocking(move || fetch(&store, &id, l, before)).await?;
    let next = (list.len() == l).then(|| list.last().map(id_of)).flatten();
    let items: Vec<Value> = list.iter().map(view).collect();
    Ok(Json(json!({key: items, "next": next})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    since: Option<String>,
}

/// Why a `backlog_overflow` dead letter cannot be sent again from the queue.
const REFERENCE_HINT: &str = "a backlog_overflow dead letter is a reference to the logged event \
(messageId, source, receivedAt, log seq), not a request; send such events again with \
`switchyard replay --destination ID --from-log --since <received_at>` while storage.retention still keeps the log; \
a log_damage dead letter names log records that could not be read, and there is nothing to send";

pub async fn replay_one(
    State(state): State<AppState>,
    Path((id, dl_id)): Path<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    replayable(&state, &id)?;
    let (store, dest) = (state.store.clone(), id.clone());
    let found = blocking(move || store.dead_letter_by_id(&dest, dl_id)).await?;
    match found {
        None => return Err(ApiError::not_found(format!("no dead letter {dl_id}"))),
        Some(d) if d.is_reference() => {
            return Err(ApiError::bad_request("not_replayable", REFERENCE_HINT));
        }
        Some(_) => {}
    }
    let (n, _) = replay(&state, id, move |d| d.delivery.id == dl_id).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no dead letter {dl_id}")));
    }
    Ok(Json(json!({"replayed": n})))
}

/// Dead letters go back into the retry set of the delivery engine: only webhook, segment and
/// nats destinations read one. A file or postgres destination's dead letters are all
/// `backlog_overflow` references, so replaying them is refused rather than moving them into a
/// retry set nobody reads.
fn replayable(state: &AppState, id: &str) -> Result<(), ApiError> {
    known(state, id)?;
    let kind = state
        .config
        .destinations
        .iter()
        .find(|d| d.id == id)
        .map(|d| &d.kind);
    match kind {
        Some(k) if k.delivered().is_some() => Ok(()),
        None => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "unsupported_destination",
            "only webhook, segment and nats destinations replay dead letters; a file or postgres \
             destination's dead letters are backlog_overflow references to logged events \
             (messageId, source, receivedAt, log seq), kept so that nothing is dropped unseen",
        )),
    }
}

pub async fn replay_all(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<JsonBody<ReplayBody>>,
) -> Result<Json<Value>, ApiError> {
    let since = match body.and_then(|JsonBody(b)| b.since) {
        None => i64::MIN,
        Some(s) => parse_since(&s, state.clock.now_ms()).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_since",
                "since must be RFC 3339 or a duration such as 2h",
            )
        })?,
    };
    replayable(&state, &id)?;
    let (n, references) = replay(&state, id, move |d| d.dead_at_ms >= since).await?;
    if references > 0 {
        return Ok(Json(
            json!({"replayed": n, "not_replayable": references, "hint": REFERENCE_HINT}),
        ));
    }
    Ok(Json(json!({"replayed": n})))
}

/// (moved into the retry set, `backlog_overflow` references picked but left in place).
async fn replay(
    state: &AppState,
    id: String,
    pick: impl Fn(&DeadLetter) -> bool + Send + 'static,
) -> Result<(usize, usize), ApiError> {
    known(state, &id)?;
    let (store, now, dest) = (state.store.clone(), state.clock.now_ms(), id.clone());
    let (moved, references) = blocking(move || store.replay_dead_letters(&dest, now, pick)).await?;
    if let Some(d) = state.destinations.iter().find(|d| d.id == id) {
        d.wake.notify_one();
    }
    Ok((moved.len(), references))
}

/// `since`: RFC 3339, or a duration meaning "that long ago" (`2h`, `30m`).
pub fn parse_since(s: &str, now_ms: i64) -> Option<i64> {
    if let Some(t) = crate::event::timestamp::parse(s) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let d = crate::config::units::parse_duration(s).ok()?;
    let ago = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Some(now_ms.saturating_sub(ago))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogReplayBody {
    from_log: bool,
    since: String,
}

/// `POST /api/v1/destinations/{id}/replay` with `{"from_log": true, "since": T}`: sends
/// again every event this destination has already passed that was received since `T`. Every
/// destination type: the delivery worker (webhook, segment, nats) replays per delivery, the
/// file and postgres runners per batch (`destinations/replay.rs`).
pub async fn replay_from_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<LogReplayBody>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &id)?;
    if !body.from_log {
        return Err(ApiError::bad_request(
            "unsupported_replay",
            "only {\"from_log\": true} is supported here; dead letters replay at .../dead-letters/replay",
        ));
    }
    let since_ms = parse_since(&body.since, state.clock.now_ms()).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_since",
            "since must be RFC 3339 or a duration such as 2h",
        )
    })?;
    let status = state
        .destinations
        .iter()
        .find(|d| d.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("no such destination"))?;
    let (data_dir, log_dir) = (
        state.config.server.data_dir.clone(),
        state.log.dir().to_owned(),
    );
    let started = tokio::task::spawn_blocking(move || {
        crate::destinations::replay::start(&data_dir, &log_dir, &status, since_ms)
    })
    .await
    .map_err(|e| ApiError::internal("replay_failed", e))?;
    let until_seq = match started {
        Ok(run) => run.until_seq,
        Err(e @ crate::destinations::replay::StartError::Running) => {
            return Err(ApiError::conflict("replay_running", e.to_string()));
        }
        Err(e) => return Err(ApiError::internal("replay_failed", e)),
    };
    Ok(Json(
        json!({"started": true, "until_seq": until_seq, "since": time(since_ms)}),
    ))
}
