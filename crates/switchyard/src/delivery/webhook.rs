//! Segment "Webhooks (Actions)" requests (docs/destinations.md#webhook-destinations): one per event
//! and matching mapping, with the mapped URL, method, headers and body, our fixed headers,
//! and the signature of the configured scheme added at each attempt.

use serde_json::Value;

use super::http::{Response, SendError};
use super::store::{HttpRequest, Pending};
use base64::Engine;

use crate::config::{Forward, MappingConfig, Signing};
use crate::signing;

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

/// The request of a `segment` destination: the event as logged, without our
/// `context.switchyard` and without `sentAt` (which is set per attempt on the envelope, so
/// the upstream does not correct the skew twice), to `<endpoint>/v1/batch`.
pub fn build_forward(event: &Value, message_id: &str, f: &Forward) -> Result<HttpRequest, String> {
    let mut ev = event.clone();
    if let Some(obj) = ev.as_object_mut() {
        obj.shift_remove("sentAt");
        if let Some(ctx) = obj.get_mut("context").and_then(Value::as_object_mut) {
            ctx.shift_remove("switchyard");
        }
    }
    let body = serde_json::to_string(&ev).map_err(|e| e.to_string())?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:", f.write_key));
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("content-encoding".to_owned(), "gzip".to_owned()),
        (
            "user-agent".to_owned(),
            concat!("switchyard/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
        ("authorization".to_owned(), format!("Basic {auth}")),
        ("idempotency-key".to_owned(), ascii_or_encoded(message_id)),
    ];
    Ok(HttpRequest {
        url: f.batch_url.clone(),
        method: "POST".into(),
        headers,
        signed: body.clone(),
        body,
    })
}

/// The bytes of one attempt. A forwarded delivery is wrapped in a batch envelope whose
/// `sentAt` is now, and gzipped.
pub fn attempt_body(p: &Pending, forward: bool, now_ms: i64) -> bytes::Bytes {
    let body = p.request.body();
    if !forward {
        return bytes::Bytes::from(body.to_owned());
    }
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let sent_at = crate::event::timestamp::format(at);
    let items = if p.members.is_empty() {
        format!("[{body}]")
    } else {
        body.to_owned()
    };
    let json = format!(r#"{{"batch":{items},"sentAt":"{sent_at}"}}"#);
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_all(&mut gz, json.as_bytes());
    bytes::Bytes::from(gz.finish().unwrap_or_default())
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
fn ascii_or_encoded(s: &str) -> String {
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

#[cfg(test)]
mod forward_tests {
    use serde_json::json;

    use super::*;
    use crate::delivery::store::Request;

    #[test]
    fn forwarding_strips_our_context_and_sent_at_and_wraps_each_attempt() {
        let f = Forward {
            batch_url: "https://api.segment.io/v1/batch".into(),
            write_key: "wk".into(),
        };
        let ev = json!({"type": "track", "messageId": "m-1", "sentAt": "2024-01-01T00:00:10.000Z", "timestamp": "2024-01-01T00:04:50.000Z",
                        "context": {"library": {"name": "x"}, "switchyard": {"source": "web", "environment": "production"}}});
        let req = build_forward(&ev, "m-1", &f).unwrap();
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert!(body.get("sentAt").is_none());
        assert_eq!(body["context"], json!({"library": {"name": "x"}}));
        assert_eq!(body["timestamp"], "2024-01-01T00:04:50.000Z");
        let h = |k: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            h("authorization"),
            Some("Basic d2s6"),
            "Basic base64(\"wk:\")"
        );
        assert_eq!(h("content-encoding"), Some("gzip"));
        let p = Pending {
            id: 0,
            seq: 1,
            source: "web".into(),
            message_id: "m-1".into(),
            mapping: "forward".into(),
            received_ms: 0,
            request: Request::Http(req),
            attempts: 0,
            next_at_ms: 0,
            last_status: None,
            last_error: None,
            members: Vec::new(),
        };
        let gz = attempt_body(&p, true, 1_700_000_000_000);
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json)
            .unwrap();
        let env: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            env["sentAt"], "2023-11-14T22:13:20.000Z",
            "sentAt is the time of this attempt"
        );
        assert_eq!(env["batch"][0]["messageId"], "m-1");
    }
}
