//! What a finished function run becomes: its events appended to the log (the HTTP API's
//! path) and an entry in the source's function log, with the request's secrets
//! (`secrets::of_request`) redacted.

use super::{Call, append_and_show, context, emit};
use crate::functions::Outcome;
use crate::functions::logs::RunLog;
use crate::http::ApiError;
use crate::telemetry::metrics;

/// Emits a successful run's events (`None` when the run failed), then logs the run with the
/// messageIds it produced, so the lineage view can show which run made an event.
pub(super) async fn finish_run(
    call: &Call<'_>,
    outcome: &Outcome,
    body: &[u8],
    trigger: &'static str,
    secrets: &[String],
) -> Result<Option<usize>, ApiError> {
    let emitted = match outcome.error {
        None => Some(emit_function(call, outcome, body).await),
        Some(_) => None,
    };
    let ids = match &emitted {
        Some(Ok((_, ids))) => ids.clone(),
        _ => Vec::new(),
    };
    log_run(call, outcome, trigger, ids, secrets);
    emitted.transpose().map(|o| o.map(|(n, _)| n))
}

/// Logs a run in the function log; `secrets` (the request's) are redacted from what it
/// printed and threw.
fn log_run(
    call: &Call<'_>,
    outcome: &Outcome,
    trigger: &'static str,
    message_ids: Vec<String>,
    secrets: &[String],
) {
    let label = outcome.error.as_ref().map_or("ok".to_owned(), |e| {
        serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    });
    let m = &call.state.metrics;
    m.function_runs
        .get_or_create(&metrics::source_reason(call.id, &label))
        .inc();
    let mut logs = outcome.logs.clone();
    let mut error = outcome.error.clone();
    if !secrets.is_empty() {
        logs.iter_mut()
            .for_each(|l| l.message = super::secrets::scrub(&l.message, secrets));
        if let Some(e) = &mut error {
            e.message = super::secrets::scrub(&e.message, secrets);
            e.stack = super::secrets::scrub(&e.stack, secrets);
        }
    }
    call.state.webhooks.logs.push(
        call.id,
        RunLog {
            at_ms: call.state.clock.now_ms(),
            outcome: label,
            duration_ms: outcome.duration.as_secs_f64() * 1000.0,
            events: outcome.events.len(),
            logs,
            error,
            trigger,
            message_ids,
        },
    );
}

/// Appends what a successful run emitted; returns how many events were accepted and the
/// messageIds of all of them (duplicates included).
async fn emit_function(
    call: &Call<'_>,
    outcome: &Outcome,
    body: &[u8],
) -> Result<(usize, Vec<String>), ApiError> {
    if outcome.events.is_empty() && outcome.objects.is_empty() {
        return Ok((0, Vec::new()));
    }
    let cx = context(call, None);
    let mut entries =
        emit::function_entries(&outcome.events, &outcome.without_message_id, &cx, body);
    let ids = entries.iter().map(|e| e.message_id.clone()).collect();
    entries.extend(emit::object_entries(&outcome.objects, &cx));
    Ok((append_and_show(call, entries).await?, ids))
}
