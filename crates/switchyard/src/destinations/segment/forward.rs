//! The `segment` destination's requests: each event as logged, less what only this
//! instance should see, forwarded to `<endpoint>/v1/batch` in a batch envelope built at
//! each attempt.

use base64::Engine;
use serde_json::Value;

use crate::config::Forward;
use crate::delivery::store::{HttpRequest, Pending};
use crate::delivery::webhook::ascii_or_encoded;

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

/// The bytes of one forwarded attempt: the delivery wrapped in a batch envelope whose
/// `sentAt` is now, gzipped.
pub fn attempt_body(p: &Pending, now_ms: i64) -> bytes::Bytes {
    let body = p.request.body();
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

#[cfg(test)]
mod tests {
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
        let gz = crate::delivery::webhook::attempt_body(&p, true, 1_700_000_000_000);
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
