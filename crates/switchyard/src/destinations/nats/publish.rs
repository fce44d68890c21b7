//! The `nats` destination's sender: JetStream publishes with `Nats-Msg-Id` (the stream drops
//! repeats, so retries and replays do not duplicate), acknowledged by the server; or, with
//! `core: true`, plain publishes (at most once, documented as such).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::delivery::http::SendError;
use crate::delivery::store::NatsPublish;
use crate::delivery::transport::{PubAck, Sent};

#[derive(Clone)]
pub struct NatsPublisher {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    core: bool,
}

impl NatsPublisher {
    /// Errors name the URL with its user-info redacted: they reach `inspect`, `check` and
    /// the log.
    pub async fn connect(url: &str, core: bool) -> Result<NatsPublisher, String> {
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url);
        let shown = crate::redact::url(url);
        let client = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| format!("connecting to {shown} timed out"))?
            .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(NatsPublisher { client, js, core })
    }

    /// The stream that captures `subject`, if any.
    pub async fn stream_for(&self, subject: &str) -> Result<String, String> {
        self.js.stream_by_subject(subject).await.map_err(|e| format!("no JetStream stream captures {subject:?} ({e}); create one, or set core: true for at-most-once publishes"))
    }

    /// Publishes `p`: JetStream's acknowledgement (stream, sequence, whether it dropped a
    /// repeat), or, with `core`, that the server took it after a flush.
    pub async fn publish(&self, p: &NatsPublish, timeout: Duration) -> Result<Sent, SendError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", p.msg_id.as_str());
        let subject = p.subject.clone();
        let body = Bytes::from(p.body.clone());
        let net = |e: &dyn std::fmt::Display| SendError::Network(e.to_string());
        let work = async {
            if self.core {
                self.client
                    .publish_with_headers(subject, headers, body)
                    .await
                    .map_err(|e| net(&e))?;
                self.client.flush().await.map_err(|e| net(&e))?;
                return Ok(Sent::NatsCore);
            }
            let ack = self
                .js
                .publish_with_headers(subject, headers, body)
                .await
                .map_err(|e| net(&e))?;
            let ack = ack.await.map_err(|e| net(&e))?;
            Ok(Sent::Nats(PubAck {
                stream: ack.stream,
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }))
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

/// Renders `events.{{type}}`: each placeholder is the value at its path, with characters
/// outside `[A-Za-z0-9_-]` replaced by `_` (so a value cannot add tokens, wildcards or
/// spaces); a missing value renders as `_`.
pub fn render_subject(template: &str, event: &Value) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let path = rest[start + 2..start + end].trim();
        let value = crate::mapping::path::get_template(event, path)
            .filter(|v| !v.is_null())
            .map(|v| crate::mapping::js_string(&v))
            .unwrap_or_default();
        let clean: String = value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        out.push_str(if clean.is_empty() { "_" } else { &clean });
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subjects_are_rendered_and_sanitised() {
        let ev = json!({"type": "track", "event": "Order Completed.v2", "context": {"app": {"name": "shop*"}}});
        assert_eq!(render_subject("events.{{type}}", &ev), "events.track");
        assert_eq!(
            render_subject("e.{{ event }}.{{context.app.name}}", &ev),
            "e.Order_Completed_v2.shop_"
        );
        assert_eq!(render_subject("e.{{missing}}", &ev), "e._");
        assert_eq!(render_subject("plain.subject", &ev), "plain.subject");
    }
}
