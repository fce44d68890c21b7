//! The `nats` destination's sender: JetStream publishes with `Nats-Msg-Id` (the stream drops
//! repeats, so retries and replays do not duplicate), acknowledged by the server; or, with
//! `core: true`, plain publishes (at most once, documented as such).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::http::{Response, SendError};

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

    pub async fn publish(
        &self,
        subject: &str,
        msg_id: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, SendError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let subject = subject.to_owned();
        let work = async {
            if self.core {
                self.client
                    .publish_with_headers(subject, headers, body)
                    .await
                    .map_err(|e| SendError::Network(e.to_string()))?;
                self.client
                    .flush()
                    .await
                    .map_err(|e| SendError::Network(e.to_string()))?;
                return Ok(Response {
                    status: 200,
                    body_prefix: "published (core, at most once)".into(),
                    retry_after: None,
                    location: None,
                });
            }
            let ack = self
                .js
                .publish_with_headers(subject, headers, body)
                .await
                .map_err(|e| SendError::Network(e.to_string()))?;
            let ack = ack.await.map_err(|e| SendError::Network(e.to_string()))?;
            let dup = if ack.duplicate { ", duplicate" } else { "" };
            Ok(Response {
                status: 200,
                body_prefix: format!("stream {} seq {}{dup}", ack.stream, ack.sequence),
                retry_after: None,
                location: None,
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

/// Renders `events.{{type}}`: each placeholder is the value at its path, with characters outside
/// `[A-Za-z0-9_-]` replaced by `_` (docs/destinations.md#nats); a missing value renders as `_`.
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
