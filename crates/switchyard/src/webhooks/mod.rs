//! Webhook sources (docs/sources.md): `POST /webhooks/{id}` and `/webhooks/{id}/{token}`.
//!
//! Order: authenticate (signature and/or token) → admission → idempotency → the source's
//! function (`functions/`) or the body passed through as Segment events → the HTTP API's
//! path into the durable log (`ingest::to_entries`, `ingest::append`) → the answer, only
//! once durable. A `RetryError` stores the request (`store.rs`) for `retry.rs` to re-run;
//! `run.rs` turns a finished run into log entries and a function-log entry.

pub mod emit;
pub mod idempotency;
pub mod retry;
mod run;
pub mod secrets;
pub mod store;
pub mod verify;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::{Config, WebhookSource};
use crate::event::RequestContext;
use crate::functions::logs::FunctionLogs;
use crate::functions::pool::{FunctionSpec, Pool, PoolError};
use crate::functions::{ErrorKind, FnRequest, Outcome};
use crate::http::ApiError;
use crate::ingest;
use crate::log::record::{Entry, Kind};
use crate::state::AppState;
use idempotency::Claim;
use run::finish_run;

/// Everything webhook sources share: the function pool and log, and the durable state.
pub struct Webhooks {
    pub pool: Pool,
    pub logs: FunctionLogs,
    pub store: std::sync::Arc<store::WebhookStore>,
    pub guard: idempotency::Guard,
}

impl Webhooks {
    /// `now_ms`: the injected clock's time, for which idempotency keys are still live.
    pub fn open(
        config: &Config,
        client: crate::delivery::http::HttpClient,
        now_ms: i64,
    ) -> anyhow::Result<Webhooks> {
        let store = store::WebhookStore::open(&config.server.data_dir.join("webhooks.redb"))
            .context("cannot open the webhook store")?;
        let guard =
            idempotency::Guard::load(&store, now_ms).context("cannot load idempotency keys")?;
        let specs: Vec<FunctionSpec> = config
            .sources
            .iter()
            .filter_map(|s| match &s.kind {
                crate::config::SourceKind::Webhook(w) => w.function.clone(),
                _ => None,
            })
            .collect();
        let logs = FunctionLogs::new(specs.iter().map(|s| s.source.as_str()));
        let f = &config.functions;
        let pool = Pool::start(
            specs,
            f.workers,
            f.limits,
            client,
            tokio::runtime::Handle::current(),
        )
        .context("cannot start the function workers")?;
        Ok(Webhooks {
            pool,
            logs,
            store: std::sync::Arc::new(store),
            guard,
        })
    }
}

pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    handle(state, id, None, uri, headers, body).await
}

pub async fn receive_with_token(
    State(state): State<AppState>,
    Path((id, token)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    handle(state, id, Some(token), uri, headers, body).await
}

/// One webhook request, as the handlers and the retry loop see it.
struct Call<'a> {
    state: &'a AppState,
    id: &'a str,
    src: &'a WebhookSource,
    received_at: time::OffsetDateTime,
}

impl Call<'_> {
    fn received_ms(&self) -> i64 {
        (self.received_at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Shows a request-level outcome (no event was logged) in the source's recent events.
    fn show(&self, kind: Kind, reason: String, body: &[u8]) {
        let entry = Entry {
            kind,
            received_ms: self.received_ms(),
            source: self.id.into(),
            environment: self.src.environment.as_str().into(),
            message_id: String::new(),
            reason,
            body: crate::event::rejected_display(&String::from_utf8_lossy(body)),
        };
        ingest::record(self.state, self.id, vec![entry]);
    }
}

async fn handle(
    state: AppState,
    id: String,
    path_token: Option<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    state.check_accepting()?;
    let src = state
        .config
        .sources
        .iter()
        .find_map(|s| match &s.kind {
            crate::config::SourceKind::Webhook(w) if s.id == id => Some(&**w),
            _ => None,
        })
        .ok_or_else(|| ApiError::not_found(format!("no webhook source {id:?}")))?;
    let call = Call {
        state: &state,
        id: &id,
        src,
        received_at: state.clock.now_utc(),
    };
    let bytes = ingest::body::read_limited(&headers, body, state.config.functions.max_body).await?;
    let presented = verify::Presented {
        path_token: path_token.as_deref(),
        query: uri.query(),
    };
    let now_secs = call.received_at.unix_timestamp();
    if let Err(reason) = verify::authenticate(src, presented, &headers, &bytes, now_secs) {
        call.show(
            Kind::Unverified,
            format!("unverified: {reason}"),
            &bytes[..bytes.len().min(2048)],
        );
        return Err(ApiError::unauthorized("unverified", reason));
    }
    state.admission.admit(&state, &id, 1, call.received_ms())?;
    if src.function.is_some() {
        let req = Arc::new(FnRequest {
            body: String::from_utf8_lossy(&bytes).into_owned(),
            headers: header_pairs(&headers),
            url: request_url(&headers, &uri),
        });
        run_function(&call, req, &bytes).await
    } else {
        pass_through(&call, &bytes).await
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn request_url(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!(
        "http://{host}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    )
}

async fn run_function(
    call: &Call<'_>,
    req: Arc<FnRequest>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let webhooks = &call.state.webhooks;
    let now = call.received_ms();
    let key = call
        .src
        .idempotency
        .as_ref()
        .and_then(|i| request_key(call, &i.key, body));
    let claimed = match key.map(|k| webhooks.guard.claim(k, now)) {
        None => None,
        Some(Claim::Mine(c)) => Some(c),
        Some(Claim::Busy) => return Err(in_progress()),
        Some(Claim::Done) => {
            call.show(
                Kind::Duplicate,
                "idempotent: this request already succeeded within the idempotency window".into(),
                body,
            );
            return Ok(Json(json!({"success": true, "duplicate": true})).into_response());
        }
    };
    let outcome = webhooks
        .pool
        .run(call.id, req.clone())
        .await
        .map_err(pool_error)?;
    let shown_secrets = secrets::of_request(call.src, &req);
    let emitted = finish_run(call, &outcome, body, "webhook", &shown_secrets).await?;
    match outcome.error.as_ref().map(|e| e.kind) {
        None => {
            let n = emitted.unwrap_or(0);
            if let (Some(c), Some(i)) = (claimed, &call.src.idempotency) {
                c.succeed(now + i.window.as_millis() as i64);
            }
            Ok(Json(json!({"success": true, "emitted": n})).into_response())
        }
        Some(ErrorKind::Retry) => retry::store_first(call, &req, &outcome),
        Some(kind) => Err(failure(call, kind, &outcome, body, &shown_secrets)),
    }
}

/// 409 while a request with the same idempotency key runs: the sender retries, and then
/// gets either the replay's 200 or, if the first run failed, a run of its own.
fn in_progress() -> ApiError {
    ApiError {
        retry_after: Some(1),
        ..ApiError::conflict(
            "idempotency_in_progress",
            "a request with this idempotency key is being processed; retry shortly",
        )
    }
}

/// The idempotency key of a function source is read from the request body.
fn request_key(call: &Call<'_>, path: &[String], body: &[u8]) -> Option<idempotency::KeyHash> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match idempotency::lookup(&v, path) {
        idempotency::Key::Found(k) => Some(idempotency::hash(
            call.id,
            &call.src.environment,
            "request",
            &k,
        )),
        idempotency::Key::Absent => None,
        idempotency::Key::Unusable(why) => {
            tracing::info!(source = call.id, "{why}; processed without idempotency");
            None
        }
    }
}

/// The answer for a run that failed (docs/functions.md#outcomes), shown in the debugger too.
fn failure(
    call: &Call<'_>,
    kind: ErrorKind,
    outcome: &Outcome,
    body: &[u8],
    shown_secrets: &[String],
) -> ApiError {
    let (name, message) = outcome
        .error
        .as_ref()
        .map_or(("Error", ""), |e| (e.name.as_str(), e.message.as_str()));
    let message = secrets::scrub(message, shown_secrets);
    let message = message.as_str();
    let reason = format!("function_error: {name}: {message}");
    call.show(Kind::Rejected, reason.clone(), body);
    match kind {
        ErrorKind::Timeout => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_timeout",
            message,
        ),
        ErrorKind::Memory | ErrorKind::Internal => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_crashed",
            format!("{name}: {message}"),
        ),
        _ => ApiError::bad_request("function_error", format!("{name}: {message}")),
    }
}

fn pool_error(e: PoolError) -> ApiError {
    match e {
        PoolError::Busy => ApiError::too_many("functions_busy", e.to_string(), 1),
        PoolError::Closed => ApiError::unavailable("draining", e.to_string()),
        PoolError::NoFunction(_) => ApiError::internal("no_function", e),
    }
}

fn context<'a>(call: &'a Call<'a>, pass: Option<&emit::PassThrough<'a>>) -> RequestContext<'a> {
    RequestContext {
        source: call.id,
        environment: &call.src.environment,
        received_at: call.received_at,
        path_type: None,
        sent_at: pass.and_then(|p| p.sent_at),
        context: pass.and_then(|p| p.context),
        integrations: pass.and_then(|p| p.integrations),
    }
}

async fn append_and_show(call: &Call<'_>, entries: Vec<Entry>) -> Result<usize, ApiError> {
    let entries = ingest::append(call.state, entries).await?;
    let accepted = entries.iter().filter(|e| e.kind == Kind::Accepted).count();
    ingest::record(call.state, call.id, entries);
    Ok(accepted)
}

async fn pass_through(call: &Call<'_>, body: &[u8]) -> Result<Response, ApiError> {
    let parsed = emit::parse_pass_through(body)?;
    let cx = context(call, Some(&parsed));
    let mut entries = ingest::to_entries(&parsed.elements, &cx);
    let now = call.received_ms();
    let claims = match &call.src.idempotency {
        Some(i) => emit::apply_idempotency(&mut entries, &i.key, &call.state.webhooks.guard, now)
            .ok_or_else(in_progress)?,
        None => Vec::new(),
    };
    let total = parsed.elements.len();
    let accepted = append_and_show(call, entries).await?;
    ingest::count_folded(call.state, call.id, total);
    if let Some(i) = &call.src.idempotency {
        let expires = now + i.window.as_millis() as i64;
        claims.into_iter().for_each(|c| c.succeed(expires));
    }
    Ok(Json(json!({"success": true, "received": total, "accepted": accepted})).into_response())
}
