//! Segment "Webhooks (Actions)" requests (docs/destinations.md#webhook-destinations): one per event
//! and matching mapping, with the mapped URL, method, headers and body, our fixed headers,
//! and the signature of the configured scheme added at each attempt.

use serde_json::Value;

use super::http::{Response, SendError};
use super::store::{HttpRequest, Pending};

use crate::config::{MappingConfig, Signing};
use crate::signing;

/// The bytes of one attempt: the stored body, or for a forwarded delivery the batch
/// envelope `destinations/segment/forward.rs` wraps it in at each attempt.
pub fn attempt_body(p: &Pending, forward: bool, now_ms: i64) -> bytes::Bytes {
    if forward {
        return crate::destinations::segment::forward::attempt_body(p, now_ms);
    }
    bytes::Bytes::from(p.request.body().to_owned())
}

/// Builds the request of one (event, mapping), or the permanent reason it cannot be built.
pub fn build(
    mapping: &MappingConfig,
    event: &Value,
    message_id: &str,
) -> Result<HttpRequest, String> {
    let url = match mapping
        .url
        .evaluate(event)
        .map_err(|e| format!("url mapping failed: {e}"))?
    {
        Some(Value::String(u)) => u,
        other => {
            return Err(format!(
                "the url mapping gave {}, not a string",
                describe(other.as_ref())
            ));
        }
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| format!("the url {url:?} is not a valid URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("the url {url:?} is not an absolute http(s) URL"));
    }
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), "Segment (Actions)".to_owned()),
        (
            "x-switchyard-mapping".to_owned(),
            ascii_or_encoded(&mapping.name),
        ),
        ("idempotency-key".to_owned(), ascii_or_encoded(message_id)),
    ];
    for (name, value) in &mapping.headers {
        let v = match value
            .evaluate(event)
            .map_err(|e| format!("header {name} mapping failed: {e}"))?
        {
            None => continue,
            Some(Value::String(s)) => s,
            Some(other) => crate::mapping::js_string(&other),
        };
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
            return Err(format!(
                "header {name} value is not ASCII (payload validation failed)"
            ));
        }
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        headers.push((name.clone(), v));
    }
    let body = match mapping
        .data
        .evaluate(event)
        .map_err(|e| format!("data mapping failed: {e}"))?
    {
        Some(obj @ Value::Object(_)) => serde_json::to_string(&obj).map_err(|e| e.to_string())?,
        other => {
            return Err(format!(
                "data must resolve to an object, got {} (payload validation failed)",
                describe(other.as_ref())
            ));
        }
    };
    Ok(HttpRequest {
        url,
        method: mapping.method.clone(),
        headers,
        signed: body.clone(),
        body,
    })
}

fn describe(v: Option<&Value>) -> &'static str {
    match v {
        None => "nothing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}

/// Visible ASCII stays; anything else is percent-encoded (a header value must be ASCII).
pub(crate) fn ascii_or_encoded(s: &str) -> String {
    if s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return s.to_owned();
    }
    s.bytes()
        .map(|b| {
            if (0x21..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The headers of one attempt of `p`, whose request is `req`: the stored ones plus the
/// signature of `signing`.
pub fn attempt_headers(
    p: &Pending,
    req: &HttpRequest,
    signing: &Signing,
    destination: &str,
    now_ms: i64,
) -> Vec<(String, String)> {
    let mut h = req.headers.clone();
    match signing {
        Signing::None => {}
        Signing::Segment(secret) => h.push((
            "x-signature".into(),
            signing::segment_signature(secret, req.signed.as_bytes()),
        )),
        Signing::StandardWebhooks(key) => {
            let id = signing::webhook_id(&p.source, &p.message_id, destination, &p.mapping);
            let ts = now_ms.div_euclid(1000);
            h.push((
                "webhook-signature".into(),
                key.sign(&id, ts, req.body.as_bytes()),
            ));
            h.push(("webhook-id".into(), id));
            h.push(("webhook-timestamp".into(), ts.to_string()));
        }
    }
    h
}

/// What to do after an attempt: 2xx delivered; 408, 423, 429 and 5xx (but 501) retried;
/// anything else, redirects included, permanent.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    Retry {
        reason: String,
        retry_after: Option<String>,
    },
    Permanent(String),
}

pub fn classify(result: &Result<Response, SendError>) -> Outcome {
    match result {
        Ok(r) => classify_response(r),
        Err(e) => classify_error(e),
    }
}

/// What an HTTP answer means for the delivery.
pub fn classify_response(r: &Response) -> Outcome {
    match r.status {
        200..300 => Outcome::Delivered,
        408 | 423 | 429 => retry_status(r),
        s if s >= 500 && s != 501 => retry_status(r),
        300..400 => Outcome::Permanent(match &r.location {
            Some(to) => format!(
                "HTTP {} (redirects are not followed; Location: {})",
                r.status,
                crate::redact::url(to).chars().take(256).collect::<String>()
            ),
            None => format!("HTTP {} (redirects are not followed)", r.status),
        }),
        _ => Outcome::Permanent(format!("HTTP {}", r.status)),
    }
}

fn retry_status(r: &Response) -> Outcome {
    Outcome::Retry {
        reason: format!("HTTP {}", r.status),
        retry_after: r.retry_after.clone(),
    }
}

/// What a failed send means, for any transport: timeouts and network errors are retried,
/// an egress refusal or a request that cannot be built is permanent.
pub fn classify_error(e: &SendError) -> Outcome {
    match e {
        SendError::Timeout => Outcome::Retry {
            reason: "timed out".into(),
            retry_after: None,
        },
        SendError::Network(m) => Outcome::Retry {
            reason: format!("network error: {m}"),
            retry_after: None,
        },
        SendError::Egress(m) | SendError::Invalid(m) => Outcome::Permanent(m.clone()),
    }
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
