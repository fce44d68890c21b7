//! From a logged event to the deliveries a webhook (or segment) destination makes of it:
//! one per enabled mapping whose condition matches, each built, or failed with the
//! permanent reason it could not be built.

use super::store::{Pending, Request};
use super::webhook;
use crate::config::{DestinationConfig, WebhookConfig};
use crate::log::record::{Entry, Kind};

pub struct Planned {
    pub batch_size: usize,
    /// The delivery, or the delivery with the reason it cannot be sent.
    pub delivery: Result<Pending, (Pending, String)>,
}

/// Nothing when the destination does not want the event.
pub fn plan(dest: &DestinationConfig, cfg: &WebhookConfig, seq: u64, e: &Entry) -> Vec<Planned> {
    if e.kind != Kind::Accepted || !dest.wants(&e.source, &e.environment) {
        return Vec::new();
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&e.body) else {
        return Vec::new();
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
            let built = match (&cfg.forward, &cfg.nats) {
                (Some(f), _) => webhook::build_forward(&event, &e.message_id, f),
                (None, Some(n)) => Ok(nats_request(n, &event, e, &dest.id, &m.name)),
                (None, None) => webhook::build(m, &event, &e.message_id),
            };
            let empty = Request {
                url: String::new(),
                method: m.method.clone(),
                headers: vec![],
                body: String::new(),
                signed: String::new(),
            };
            let mut p = Pending {
                id: 0,
                seq,
                source: e.source.to_string(),
                message_id: e.message_id.clone(),
                mapping: m.name.clone(),
                received_ms: e.received_ms,
                request: empty,
                attempts: 0,
                next_at_ms: 0,
                last_status: None,
                last_error: None,
                members: Vec::new(),
            };
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

/// A NATS publish: the rendered subject, `Nats-Msg-Id` (the same hash as `webhook-id`), and
/// the event exactly as logged.
fn nats_request(
    n: &crate::config::NatsTarget,
    event: &serde_json::Value,
    e: &Entry,
    dest: &str,
    route: &str,
) -> Request {
    let id = crate::signing::webhook_id(&e.source, &e.message_id, dest, route);
    let body = String::from_utf8_lossy(&e.body).into_owned();
    let subject = super::nats::render_subject(&n.subject, event);
    Request {
        url: subject,
        method: "PUBLISH".into(),
        headers: vec![("Nats-Msg-Id".into(), id)],
        signed: String::new(),
        body,
    }
}
