//! From a logged event to the deliveries a webhook, segment or nats destination makes of it:
//! one per enabled mapping whose condition matches, each with its typed request (HTTP for
//! webhook and segment, a publish for nats), or failed with the permanent reason it could
//! not be built.

use super::store::{HttpRequest, NatsPublish, Pending, Request};
use crate::config::{DestinationConfig, Route, WebhookConfig};
use crate::log::record::{Entry, Kind};

pub struct Planned {
    pub batch_size: usize,
    /// The delivery, or the delivery with the reason it cannot be sent.
    pub delivery: Result<Pending, (Pending, String)>,
}

/// Nothing when the destination does not want the event.
pub fn plan(
    dest: &DestinationConfig,
    cfg: &WebhookConfig,
    route: &Route,
    seq: u64,
    e: &Entry,
) -> Vec<Planned> {
    if e.kind != Kind::Accepted || !dest.wants(&e.source, &e.environment) {
        return Vec::new();
    }
    let event = match serde_json::from_slice::<serde_json::Value>(&e.body) {
        Ok(event) => event,
        Err(err) => return unreadable(cfg, route, seq, e, &err),
    };
    if !dest.subscribe.as_ref().is_none_or(|f| f.matches(&event)) {
        return Vec::new();
    }
    let matching = cfg
        .mappings
        .iter()
        .filter(|m| m.enabled.for_environment(&e.environment) && m.subscribe.matches(&event));
    matching
        .map(|m| {
            let built = match route {
                Route::Segment(f) => {
                    crate::destinations::segment::forward::build_forward(&event, &e.message_id, f)
                        .map(Request::Http)
                }
                Route::Nats(n) => Ok(Request::Nats(nats_publish(n, &event, e, &dest.id, &m.name))),
                Route::Webhook => {
                    crate::destinations::webhook::request::build(m, &event, &e.message_id)
                        .map(Request::Http)
                }
            };
            let mut p = pending(route, m, seq, e);
            let delivery = match built {
                Ok(req) => {
                    p.request = req;
                    Ok(p)
                }
                Err(reason) => Err((p, reason)),
            };
            Planned {
                batch_size: m.batch_size,
                delivery,
            }
        })
        .collect()
}

/// A record no reader can parse (ingest refuses such JSON, so only an older log holds one):
/// it cannot be matched against any condition, so it is dead-lettered once, under the first
/// mapping enabled for its environment, with the reason — never skipped.
fn unreadable(
    cfg: &WebhookConfig,
    route: &Route,
    seq: u64,
    e: &Entry,
    err: &serde_json::Error,
) -> Vec<Planned> {
    let Some(m) = cfg
        .mappings
        .iter()
        .find(|m| m.enabled.for_environment(&e.environment))
    else {
        return Vec::new();
    };
    let reason = format!("the logged event could not be read: {err}");
    vec![Planned {
        batch_size: 0,
        delivery: Err((pending(route, m, seq, e), reason)),
    }]
}

/// The delivery before its request is built. One whose request cannot be built is
/// dead-lettered with this empty request of its transport (an HTTP one keeps the mapping's
/// method), so it is not taken for a reference and stays replayable as before.
fn pending(route: &Route, m: &crate::config::MappingConfig, seq: u64, e: &Entry) -> Pending {
    let request = match route {
        Route::Nats(_) => Request::Nats(NatsPublish::default()),
        Route::Webhook | Route::Segment(_) => Request::Http(HttpRequest {
            method: m.method.clone(),
            ..HttpRequest::default()
        }),
    };
    Pending {
        id: 0,
        seq,
        source: e.source.to_string(),
        message_id: e.message_id.clone(),
        mapping: m.name.clone(),
        received_ms: e.received_ms,
        request,
        attempts: 0,
        next_at_ms: 0,
        last_status: None,
        last_error: None,
        members: Vec::new(),
    }
}

/// A NATS publish: the rendered subject, `Nats-Msg-Id` (the same hash as `webhook-id`), and
/// the event exactly as logged.
fn nats_publish(
    n: &crate::config::NatsTarget,
    event: &serde_json::Value,
    e: &Entry,
    dest: &str,
    route: &str,
) -> NatsPublish {
    NatsPublish {
        subject: crate::destinations::nats::publish::render_subject(&n.subject, event),
        msg_id: crate::signing::webhook_id(&e.source, &e.message_id, dest, route),
        body: String::from_utf8_lossy(&e.body).into_owned(),
    }
}
