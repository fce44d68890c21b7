//! Compiling `destinations:`: the common keys, then each type's settings.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::compile::{Cx, list_items};
use super::raw::*;
use super::*;
use crate::fql::Fql;
use crate::mapping::Mapping;

const DESTINATION_TYPES: &str = "webhook, postgres, segment, nats, file";

pub(super) fn compile(
    cx: &mut Cx,
    v: Option<&Value>,
    sources: &[SourceConfig],
    server: &ServerConfig,
) -> Vec<DestinationConfig> {
    let mut out = Vec::new();
    let mut paths = HashSet::new();
    for (path, item) in list_items(cx, v, "destinations") {
        let Some(raw) = cx.section::<RawDestination>(Some(item), &path) else {
            continue;
        };
        if let Some(list) = &raw.sources {
            for s in list.iter().filter(|s| !sources.iter().any(|x| &x.id == *s)) {
                cx.err(format!("{path}.sources"), format!("unknown source {s:?}"));
            }
        }
        let start = match raw.start.as_deref() {
            None | Some("latest") => Start::Latest,
            Some("earliest") => Start::Earliest,
            Some(other) => {
                cx.err(
                    format!("{path}.start"),
                    format!("unknown start {other:?}; expected latest or earliest"),
                );
                Start::Latest
            }
        };
        let subscribe = raw
            .subscribe
            .as_deref()
            .and_then(|s| fql(cx, s, &format!("{path}.subscribe")));
        let backlog = backlog(cx, raw.backlog.as_ref(), &path);
        let webhook = matches!(raw.kind.as_str(), "webhook" | "segment" | "nats");
        for (field, set) in [
            ("delivery", raw.delivery.is_some()),
            ("retry", raw.retry.is_some()),
            ("mappings", raw.mappings.is_some()),
        ] {
            if set && !webhook {
                cx.err(
                    format!("{path}.{field}"),
                    "only webhook destinations take this key in this build",
                );
            }
        }
        let kind = match raw.kind.as_str() {
            "file" => crate::destinations::file::config::compile_file(
                cx,
                raw.settings.as_ref(),
                &path,
                &mut paths,
            ),
            "webhook" => compile_webhook(cx, &raw, &path, server)
                .map(|w| DestinationKind::Webhook(Box::new(w))),
            "segment" => compile_segment(cx, &raw, &path, server)
                .map(|(w, f)| DestinationKind::Segment(Box::new(w), f)),
            "nats" => {
                compile_nats(cx, &raw, &path).map(|(w, n)| DestinationKind::Nats(Box::new(w), n))
            }
            "postgres" => crate::destinations::postgres::config::compile_postgres(
                cx,
                raw.settings.as_ref(),
                &path,
            ),
            other => {
                cx.err(
                    format!("{path}.type"),
                    format!(
                        "unknown destination type {other:?}; expected one of {DESTINATION_TYPES}"
                    ),
                );
                None
            }
        };
        let Some(kind) = kind else { continue };
        out.push(DestinationConfig {
            id: raw.id,
            subscribe,
            sources: raw.sources,
            environments: raw.environments,
            start,
            backlog,
            kind,
        });
    }
    out
}

/// `backlog: { max_bytes, max_age }`, every key optional.
fn backlog(cx: &mut Cx, v: Option<&Value>, path: &str) -> BacklogConfig {
    let bpath = format!("{path}.backlog");
    let default = BacklogConfig::default();
    let Some(raw) = cx.section::<RawBacklog>(v, &bpath) else {
        return default;
    };
    let max_bytes = cx.size(
        &raw.max_bytes,
        default.max_bytes,
        &format!("{bpath}.max_bytes"),
    );
    if max_bytes < 4096 {
        cx.err(format!("{bpath}.max_bytes"), "must be at least 4KiB");
    }
    let max_age = cx.duration(&raw.max_age, default.max_age, &format!("{bpath}.max_age"));
    if max_age < Duration::from_secs(1) {
        cx.err(format!("{bpath}.max_age"), "must be at least 1s");
    }
    BacklogConfig { max_bytes, max_age }
}

fn fql(cx: &mut Cx, src: &str, path: &str) -> Option<Fql> {
    Fql::parse(src)
        .map_err(|e| cx.err(path, format!("invalid FQL: {e}")))
        .ok()
}

fn compile_webhook(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
    server: &ServerConfig,
) -> Option<WebhookConfig> {
    let settings: RawWebhookSettings = cx
        .section(raw.settings.as_ref(), &format!("{path}.settings"))
        .unwrap_or_default();
    let signing = signing(cx, settings, &format!("{path}.settings"));
    let (delivery, retry) = delivery_and_retry(cx, raw, path);
    let mappings = mappings(cx, raw.mappings.as_ref(), path, server);
    Some(WebhookConfig {
        signing,
        mappings,
        delivery,
        retry,
    })
}

fn delivery_and_retry(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
) -> (DeliveryConfig, RetryConfig) {
    let d: RawDelivery = cx
        .section(raw.delivery.as_ref(), &format!("{path}.delivery"))
        .unwrap_or_default();
    let delivery = DeliveryConfig {
        timeout: cx.duration(
            &d.timeout,
            Duration::from_secs(10),
            &format!("{path}.delivery.timeout"),
        ),
        concurrency: d.concurrency.unwrap_or(8),
        max_in_flight: d.max_in_flight.unwrap_or(1000),
        batch_linger: cx.duration(
            &d.batch_linger,
            Duration::from_secs(1),
            &format!("{path}.delivery.batch_linger"),
        ),
    };
    if !(1..=1024).contains(&delivery.concurrency) {
        cx.err(
            format!("{path}.delivery.concurrency"),
            "must be between 1 and 1024",
        );
    }
    if !(1..=100_000).contains(&delivery.max_in_flight) {
        cx.err(
            format!("{path}.delivery.max_in_flight"),
            "must be between 1 and 100000",
        );
    }
    let r: RawRetry = cx
        .section(raw.retry.as_ref(), &format!("{path}.retry"))
        .unwrap_or_default();
    let retry = RetryConfig {
        max_age: cx.duration(
            &r.max_age,
            Duration::from_secs(4 * 3600),
            &format!("{path}.retry.max_age"),
        ),
        initial_backoff: cx.duration(
            &r.initial_backoff,
            Duration::from_secs(1),
            &format!("{path}.retry.initial_backoff"),
        ),
        max_backoff: cx.duration(
            &r.max_backoff,
            Duration::from_secs(300),
            &format!("{path}.retry.max_backoff"),
        ),
    };
    if retry.initial_backoff.is_zero() || retry.max_backoff < retry.initial_backoff {
        cx.err(
            format!("{path}.retry"),
            "initial_backoff must be above 0 and at most max_backoff",
        );
    }
    (delivery, retry)
}

/// The `segment` destination: the webhook engine with one fixed route that forwards each
/// event, unchanged but for `context.switchyard` and `sentAt`, to `<endpoint>/v1/batch`.
fn compile_segment(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
    server: &ServerConfig,
) -> Option<(WebhookConfig, Forward)> {
    let spath = format!("{path}.settings");
    if raw.mappings.is_some() {
        cx.err(
            format!("{path}.mappings"),
            "a segment destination forwards whole events and takes no mappings",
        );
    }
    let s: RawSegmentSettings = cx.section(raw.settings.as_ref(), &spath)?;
    check_literal_url(cx, &s.endpoint, &format!("{spath}.endpoint"), server);
    if s.write_key.is_empty() {
        cx.err(format!("{spath}.write_key"), "is required");
    }
    let batch_size = s.batch_size.unwrap_or(100);
    if batch_size > 2500 {
        cx.err(
            format!("{spath}.batch_size"),
            "must be at most 2500 (the Tracking API's batch limit)",
        );
    }
    let (delivery, retry) = delivery_and_retry(cx, raw, path);
    let batch_url = format!("{}/v1/batch", s.endpoint.trim_end_matches('/'));
    let route = MappingConfig {
        name: "forward".into(),
        enabled: Enabled::All(true),
        subscribe: Fql::always(),
        url: Mapping::compile(serde_json::Value::String(batch_url.clone())).ok()?,
        method: "POST".into(),
        headers: Vec::new(),
        data: Mapping::whole_event(),
        batch_size: batch_size as usize,
    };
    let forward = Forward {
        batch_url,
        write_key: s.write_key,
    };
    let engine = WebhookConfig {
        signing: Signing::None,
        mappings: vec![route],
        delivery,
        retry,
    };
    Some((engine, forward))
}

fn signing(cx: &mut Cx, s: RawWebhookSettings, path: &str) -> Signing {
    let secret = s
        .shared_secret
        .or(s.shared_secret_alias)
        .filter(|s| !s.is_empty());
    match (s.signing.as_deref().unwrap_or("segment"), secret) {
        (_, None) => Signing::None,
        ("segment", Some(secret)) => Signing::Segment(secret),
        ("standard_webhooks", Some(secret)) => {
            match crate::signing::StandardWebhooks::from_secret(&secret) {
                Ok(k) => Signing::StandardWebhooks(k),
                Err(e) => {
                    cx.err(format!("{path}.shared_secret"), e.to_string());
                    Signing::None
                }
            }
        }
        (other, Some(_)) => {
            cx.err(
                format!("{path}.signing"),
                format!("unknown signing {other:?}; expected segment or standard_webhooks"),
            );
            Signing::None
        }
    }
}

fn mappings(
    cx: &mut Cx,
    v: Option<&Value>,
    path: &str,
    server: &ServerConfig,
) -> Vec<MappingConfig> {
    let Some(items) = v.and_then(Value::as_sequence) else {
        cx.err(
            format!("{path}.mappings"),
            "a webhook destination needs 1 to 5 mappings",
        );
        return Vec::new();
    };
    if !(1..=5).contains(&items.len()) {
        cx.err(
            format!("{path}.mappings"),
            format!(
                "has {} mappings; a webhook destination takes 1 to 5",
                items.len()
            ),
        );
    }
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mpath = format!("{path}.mappings[{i}]");
        let Some(raw) = cx.section::<RawMapping>(Some(item), &mpath) else {
            continue;
        };
        let name = raw.name.clone().unwrap_or_else(|| format!("mapping-{i}"));
        if !names.insert(name.clone()) {
            cx.err(
                format!("{mpath}.name"),
                format!("duplicate mapping name {name:?}"),
            );
        }
        if let Some(m) = one_mapping(cx, raw, name, &mpath, server) {
            out.push(m);
        }
    }
    out
}

fn json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn one_mapping(
    cx: &mut Cx,
    raw: RawMapping,
    name: String,
    path: &str,
    server: &ServerConfig,
) -> Option<MappingConfig> {
    let nested = raw.mapping.unwrap_or_default();
    let url = raw.url.or(nested.url);
    let method = raw
        .method
        .or(nested.method)
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    let headers = raw.headers.or(nested.headers).unwrap_or_default();
    let data = raw.data.or(nested.data);
    let batch_size = raw.batch_size.or(nested.batch_size).unwrap_or(0);
    if batch_size > 4000 {
        cx.err(
            format!("{path}.batch_size"),
            "must be at most 4000 (Segment's limit)",
        );
    }
    if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
        cx.err(
            format!("{path}.method"),
            format!("method {method} must be POST, PUT or PATCH"),
        );
    }
    let subscribe = match raw.subscribe.as_deref() {
        Some(s) => fql(cx, s, &format!("{path}.subscribe")),
        None => {
            cx.err(
                format!("{path}.subscribe"),
                "every mapping needs a subscribe condition, e.g. 'type = \"track\"'",
            );
            None
        }
    };
    let url = match url {
        None => {
            cx.err(format!("{path}.url"), "is required");
            None
        }
        Some(u) => {
            if let Some(text) = u.as_str() {
                check_literal_url(cx, text, &format!("{path}.url"), server);
            }
            mapping(cx, &json(&u), &format!("{path}.url"))
        }
    };
    let mut hs = Vec::new();
    for (k, v) in headers {
        let hpath = format!("{path}.headers.{k}");
        if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.err(&hpath, "is not a valid header name");
        }
        if v.as_str()
            .is_some_and(|s| !s.is_ascii() || s.chars().any(char::is_control))
        {
            cx.err(&hpath, "header values must be printable ASCII");
        }
        if let Some(m) = mapping(cx, &json(&v), &hpath) {
            hs.push((k, m));
        }
    }
    let data = match data {
        Some(d) => mapping(cx, &json(&d), &format!("{path}.data")),
        None => Some(Mapping::whole_event()),
    };
    let enabled = match raw.enabled {
        None => Enabled::All(true),
        Some(RawEnabled::All(b)) => Enabled::All(b),
        Some(RawEnabled::PerEnvironment(m)) => {
            Enabled::PerEnvironment(m.into_iter().collect::<HashMap<_, _>>())
        }
    };
    Some(MappingConfig {
        name,
        enabled,
        subscribe: subscribe?,
        url: url?,
        method,
        headers: hs,
        data: data?,
        batch_size: batch_size as usize,
    })
}

fn mapping(cx: &mut Cx, v: &serde_json::Value, path: &str) -> Option<Mapping> {
    Mapping::compile(v.clone())
        .map_err(|e| cx.err(path, format!("invalid mapping: {e}")))
        .ok()
}

/// A literal URL must be absolute http(s); one that the egress guard would refuse is a
/// warning, since delivery would fail permanently.
fn check_literal_url(cx: &mut Cx, text: &str, path: &str, server: &ServerConfig) {
    let Ok(uri) = text.parse::<hyper::Uri>() else {
        cx.err(
            path,
            format!("{:?} is not a valid URL", crate::redact::url(text)),
        );
        return;
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        cx.err(path, "must be an absolute http:// or https:// URL");
        return;
    }
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    // Any spelling the resolver reads as an address: `127.1`, `0x7f000001`, `[::127.0.0.1]`.
    let ip = crate::egress::literal_host_ip(host);
    let policy = crate::egress::EgressPolicy {
        allow_private_networks: server.allow_private_networks,
        allow: server.egress_allow.clone(),
    };
    if let Some(ip) = ip
        && let Err(why) = policy.check(host, ip, port)
    {
        cx.problems.push(Problem::warning(
            path,
            format!("deliveries will fail: {why}"),
        ));
    }
}

/// The `nats` destination: the delivery engine with one route that publishes each whole
/// event to a subject rendered from a template.
fn compile_nats(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
) -> Option<(WebhookConfig, NatsTarget)> {
    let spath = format!("{path}.settings");
    if raw.mappings.is_some() {
        cx.err(
            format!("{path}.mappings"),
            "a nats destination publishes whole events and takes no mappings",
        );
    }
    let s: RawNatsSettings = cx.section(raw.settings.as_ref(), &spath)?;
    let url = s.url.unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let sample = crate::delivery::nats::render_subject(&s.subject, &serde_json::json!({}));
    let valid = !sample.is_empty()
        && sample
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        && !sample.contains(['*', '>']);
    if !valid {
        cx.err(
            format!("{spath}.subject"),
            format!(
                "{:?} is not a valid subject template (dot-separated tokens, no wildcards)",
                s.subject
            ),
        );
    }
    let (delivery, retry) = delivery_and_retry(cx, raw, path);
    let route = MappingConfig {
        name: "nats".into(),
        enabled: Enabled::All(true),
        subscribe: Fql::always(),
        url: Mapping::compile(serde_json::Value::String(url.clone())).ok()?,
        // A publish has no HTTP method: `delivery/plan.rs` builds a typed NATS publish.
        method: String::new(),
        headers: Vec::new(),
        data: Mapping::whole_event(),
        batch_size: 0,
    };
    let nats = NatsTarget {
        url,
        subject: s.subject,
        core: s.core.unwrap_or(false),
    };
    let engine = WebhookConfig {
        signing: Signing::None,
        mappings: vec![route],
        delivery,
        retry,
    };
    Some((engine, nats))
}
