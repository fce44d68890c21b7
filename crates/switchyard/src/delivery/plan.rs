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
    let event = match serde_json::from_slice::<serde_json::Value>(&e.body) {
        Ok(event) => event,
        Err(err) => return unreadable(cfg, seq, e, &err),
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
            let mut p = pending(m, seq, e);
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
fn unreadable(cfg: &WebhookConfig, seq: u64, e: &Entry, err: &serde_json::Error) -> Vec<Planned> {
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
        delivery: Err((pending(m, seq, e), reason)),
    }]
}

fn pending(m: &crate::config::MappingConfig, seq: u64, e: &Entry) -> Pending {
    Pending {
        id: 0,
        seq,
        source: e.source.to_string(),
        message_id: e.message_id.clone(),
        mapping: m.name.clone(),
        received_ms: e.received_ms,
        request: Request {
            url: String::new(),
            method: m.method.clone(),
            headers: vec![],
            body: String::new(),
            signed: String::new(),
        },
        attempts: 0,
        next_at_ms: 0,
        last_status: None,
        last_error: None,
        members: Vec::new(),
    }
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
