//! Turning what a webhook produced into log entries: the events a function emitted, or a
//! body of Segment events passed through. Both then take the HTTP API's path (validation,
//! normalisation, dedupe, the durable log).

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::idempotency::{Claim, Claimed, Guard};
use crate::event::RequestContext;
use crate::http::ApiError;
use crate::ingest;
use crate::log::record::{Entry, Kind};

/// An emitted event without a messageId gets `fn-` + hex sha256 over source, raw
/// body and emit index, so a retry (ours or the caller's) dedupes.
pub fn function_message_id(source: &str, body: &[u8], index: usize) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(body);
    h.update([0]);
    h.update(index.to_string().as_bytes());
    format!("fn-{}", hex::encode(h.finalize()))
}

/// Log entries for the events a function emitted. Those listed in `without_id` get the
/// deterministic id, spliced in as the first field (the prelude's JSON.stringify output
/// always starts with `{`), so no event is parsed twice.
pub fn function_entries(
    events: &[Box<RawValue>],
    without_id: &[usize],
    cx: &RequestContext<'_>,
    body: &[u8],
) -> Vec<Entry> {
    let mut missing = without_id.iter().copied().peekable();
    let spliced: Vec<Option<Box<RawValue>>> = events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            missing.next_if_eq(&i)?;
            let rest = ev.get().strip_prefix('{')?.trim_start();
            let id = function_message_id(cx.source, body, i);
            let sep = if rest.starts_with('}') { "" } else { "," };
            RawValue::from_string(format!("{{\"messageId\":\"{id}\"{sep}{rest}")).ok()
        })
        .collect();
    let refs: Vec<&RawValue> = events
        .iter()
        .zip(&spliced)
        .map(|(ev, s)| s.as_deref().unwrap_or(ev))
        .collect();
    ingest::to_entries(&refs, cx)
}

/// Log entries for `Segment.set` objects: warehouse destinations load them into
/// `<collection>` tables; no other destination and not the debugger sees them.
pub fn object_entries(objects: &[Box<RawValue>], cx: &RequestContext<'_>) -> Vec<Entry> {
    let received_ms = (cx.received_at.unix_timestamp_nanos() / 1_000_000) as i64;
    objects
        .iter()
        .map(|o| Entry {
            kind: Kind::Object,
            received_ms,
            source: cx.source.into(),
            environment: cx.environment.into(),
            message_id: String::new(),
            reason: String::new(),
            body: o.get().as_bytes().to_vec(),
        })
        .collect()
}

/// The parts of a pass-through body: a Segment event, an array of events, or a batch
/// envelope (what a Segment Webhooks (Actions) destination or an SDK sends).
pub struct PassThrough<'a> {
    pub elements: Vec<&'a RawValue>,
    pub sent_at: Option<&'a RawValue>,
    pub context: Option<&'a RawValue>,
    pub integrations: Option<&'a RawValue>,
}

pub fn parse_pass_through(body: &[u8]) -> Result<PassThrough<'_>, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}"))
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let elements = serde_json::from_slice(body).map_err(bad)?;
        return Ok(PassThrough {
            elements,
            sent_at: None,
            context: None,
            integrations: None,
        });
    }
    if let Ok(env) = serde_json::from_slice::<ingest::Envelope<'_>>(body)
        && let Some(batch) = env.batch
    {
        let elements = serde_json::from_str(batch.get())
            .map_err(|_| ApiError::bad_request("invalid_batch", "\"batch\" must be an array"))?;
        return Ok(PassThrough {
            elements,
            sent_at: env.sent_at,
            context: env.context,
            integrations: env.integrations,
        });
    }
    let one: &RawValue = serde_json::from_slice(body).map_err(bad)?;
    if !one.get().starts_with('{') {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a webhook source without a function takes a Segment event, an array of events or a batch envelope",
        ));
    }
    Ok(PassThrough {
        elements: vec![one],
        sent_at: None,
        context: None,
        integrations: None,
    })
}

/// Idempotency for passed-through events: an accepted entry whose key succeeded before
/// becomes a duplicate. Returns the claims of the entries still accepted, to `succeed` once
/// durable; `None` (every claim released) when a key is held by a request running now.
pub fn apply_idempotency<'g>(
    entries: &mut [Entry],
    path: &[String],
    guard: &'g Guard,
    now_ms: i64,
) -> Option<Vec<Claimed<'g>>> {
    use super::idempotency::{Key, hash, lookup};
    let mut claims = Vec::new();
    for e in entries.iter_mut().filter(|e| e.kind == Kind::Accepted) {
        let Ok(v) = serde_json::from_slice::<Value>(&e.body) else {
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        match lookup(&v, path) {
            Key::Found(k) => {
                let h = hash(&e.source, &e.environment, kind, &k);
                match guard.claim(h, now_ms) {
                    Claim::Mine(c) => claims.push(c),
                    // Claims taken so far are dropped, which releases them.
                    Claim::Busy => return None,
                    Claim::Done => {
                        e.kind = Kind::Duplicate;
                        e.reason = format!(
                            "idempotent: key {k:?} already succeeded within the idempotency window"
                        );
                    }
                }
            }
            Key::Absent => {}
            Key::Unusable(why) => {
                tracing::info!(source = %e.source, message_id = %e.message_id, "{why}; processed without idempotency");
            }
        }
    }
    Some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_ids_are_deterministic_and_spliced_only_where_missing() {
        let a = function_message_id("kno", b"{}", 0);
        assert_eq!(a, function_message_id("kno", b"{}", 0));
        assert_ne!(a, function_message_id("kno", b"{}", 1));
        assert_ne!(a, function_message_id("stigg", b"{}", 0));
        assert!(a.starts_with("fn-") && a.len() == 67);
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let events = vec![
            raw(r#"{"type":"track","event":"A","userId":"u","messageId":"m1"}"#),
            raw(r#"{"type":"track","event":"B","userId":"u"}"#),
        ];
        let cx = RequestContext {
            source: "kno",
            environment: "production",
            received_at: time::OffsetDateTime::now_utc(),
            path_type: None,
            sent_at: None,
            context: None,
            integrations: None,
        };
        let entries = function_entries(&events, &[1], &cx, b"body");
        let ids: Vec<_> = entries.iter().map(|e| e.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", function_message_id("kno", b"body", 1).as_str()]);
        assert!(entries.iter().all(|e| e.kind == Kind::Accepted));
    }

    #[test]
    fn pass_through_shapes() {
        assert_eq!(
            parse_pass_through(br#"{"type":"track"}"#)
                .unwrap()
                .elements
                .len(),
            1
        );
        assert_eq!(
            parse_pass_through(br#" [{"a":1},{"b":2}]"#)
                .unwrap()
                .elements
                .len(),
            2
        );
        let env = parse_pass_through(br#"{"batch":[{"a":1}],"context":{"x":1}}"#).unwrap();
        assert_eq!(
            (env.elements.len(), env.context.map(|c| c.get())),
            (1, Some(r#"{"x":1}"#))
        );
        assert_eq!(
            parse_pass_through(b"42").err().unwrap().code,
            "invalid_body"
        );
        assert_eq!(parse_pass_through(b"{").err().unwrap().code, "invalid_json");
    }
}
