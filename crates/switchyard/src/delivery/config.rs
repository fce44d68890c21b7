//! Compiling the keys every destination of the delivery engine shares (`webhook`,
//! `segment`, `nats`): `delivery:`, `retry:` and a webhook's `mappings:`, with the check of
//! a literal URL that the segment type reuses for its endpoint.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::config::compile::{Cx, fql};
use crate::config::raw::{RawDestination, Scalar};
use crate::config::{
    DeliveryConfig, Enabled, MappingConfig, Problem, RetryConfig, ServerConfig, Signing,
    WebhookConfig,
};
use crate::mapping::Mapping;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    timeout: Option<Scalar>,
    concurrency: Option<usize>,
    max_in_flight: Option<usize>,
    batch_linger: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_age: Option<Scalar>,
    initial_backoff: Option<Scalar>,
    max_backoff: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawEnabled {
    All(bool),
    PerEnvironment(IndexMap<String, bool>),
}

/// The request fields of a mapping; Segment's export nests them under `mapping:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    url: Option<Value>,
    method: Option<String>,
    headers: Option<IndexMap<String, Value>>,
    batch_size: Option<u64>,
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    name: Option<String>,
    enabled: Option<RawEnabled>,
    subscribe: Option<String>,
    url: Option<Value>,
    method: Option<String>,
    headers: Option<IndexMap<String, Value>>,
    batch_size: Option<u64>,
    data: Option<Value>,
    /// Segment's exported shape nests the request fields here.
    mapping: Option<RawAction>,
}

/// `delivery:` and `retry:`, with their defaults.
pub(crate) fn delivery_and_retry(
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

/// `mappings:` of a webhook destination: 1 to 5, each with a unique name.
/// The engine's settings for a type with one fixed route (`segment`, `nats`): every event,
/// whole and unsigned, to `url` (for nats, the server's URL: `delivery/plan.rs` builds the
/// publish from the subject, and a publish has no HTTP method).
pub(crate) fn fixed_route(
    name: &str,
    url: &str,
    method: &str,
    batch_size: usize,
    (delivery, retry): (DeliveryConfig, RetryConfig),
) -> Option<WebhookConfig> {
    let route = MappingConfig {
        name: name.into(),
        enabled: Enabled::All(true),
        subscribe: crate::fql::Fql::always(),
        url: Mapping::compile(serde_json::Value::String(url.to_owned())).ok()?,
        method: method.into(),
        headers: Vec::new(),
        data: Mapping::whole_event(),
        batch_size,
    };
    Some(WebhookConfig {
        signing: Signing::None,
        mappings: vec![route],
        delivery,
        retry,
    })
}

pub(crate) fn mappings(
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
pub(crate) fn check_literal_url(cx: &mut Cx, text: &str, path: &str, server: &ServerConfig) {
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
