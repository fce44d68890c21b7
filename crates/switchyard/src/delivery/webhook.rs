//! What every HTTP attempt of the engine shares, whatever its type built: our
//! `ascii_or_encoded` header values, the body and headers of one attempt (the signature of
//! the configured scheme is added here, at each attempt), and what an answer or a failed
//! send means (`classify`).

use super::http::{Response, SendError};
use super::store::{HttpRequest, Pending};
use crate::config::Signing;
use crate::signing;

/// The bytes of one attempt: the stored body, or for a forwarded delivery the batch
/// envelope `destinations/segment/forward.rs` wraps it in at each attempt.
pub fn attempt_body(p: &Pending, forward: bool, now_ms: i64) -> bytes::Bytes {
    if forward {
        return crate::destinations::segment::forward::attempt_body(p, now_ms);
    }
    bytes::Bytes::from(p.request.body().to_owned())
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
