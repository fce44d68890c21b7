//! Sending a planned request over its own transport, and what the answer means: each
//! transport returns its own typed answer (an HTTP response, a JetStream acknowledgement),
//! classified per transport into delivered, retry or permanent.

use std::time::Duration;

use bytes::Bytes;

use super::http::{HttpClient, Response, SendError};
use super::store::Request;
use super::webhook::{self, Outcome};
use crate::destinations::nats::publish::NatsPublisher;

/// What a transport answered.
#[derive(Debug, Clone)]
pub enum Sent {
    Http(Response),
    /// JetStream stored the message (or, `duplicate`, had it already).
    Nats(PubAck),
    /// A core NATS publish the server took (at most once: there is no acknowledgement).
    NatsCore,
}

/// JetStream's acknowledgement of a publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PubAck {
    pub stream: String,
    pub seq: u64,
    /// The stream had this `Nats-Msg-Id` already and dropped the repeat.
    pub duplicate: bool,
}

impl Sent {
    /// The HTTP status, for the delivery log; a NATS publish has none.
    pub fn status(&self) -> Option<u16> {
        match self {
            Sent::Http(r) => Some(r.status),
            Sent::Nats(_) | Sent::NatsCore => None,
        }
    }

    /// What the delivery log keeps of the answer: the start of the HTTP body, or what
    /// NATS said.
    pub fn response_text(&self) -> String {
        match self {
            Sent::Http(r) => r.body_prefix.clone(),
            Sent::Nats(ack) => {
                let dup = if ack.duplicate { ", duplicate" } else { "" };
                format!("stream {} seq {}{dup}", ack.stream, ack.seq)
            }
            Sent::NatsCore => "published (core, at most once)".into(),
        }
    }
}

/// What an attempt's result means for the delivery.
pub fn classify(result: &Result<Sent, SendError>) -> Outcome {
    match result {
        Ok(Sent::Http(r)) => webhook::classify_response(r),
        // Acknowledged, or taken by the server (core): done. A duplicate was delivered before.
        Ok(Sent::Nats(_) | Sent::NatsCore) => Outcome::Delivered,
        Err(e) => webhook::classify_error(e),
    }
}

/// The ways out of a delivery worker: its HTTP client and, for a `nats` destination, its
/// NATS connection.
#[derive(Clone)]
pub struct Transports {
    pub http: HttpClient,
    pub nats: Option<NatsPublisher>,
    pub timeout: Duration,
}

impl Transports {
    /// Sends `req` once. `headers` and `body` are the HTTP attempt's (signed, wrapped for
    /// forwarding); a publish sends its event as planned.
    pub async fn send(
        &self,
        req: &Request,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Sent, SendError> {
        match (req, &self.nats) {
            (Request::Http(h), _) => self
                .http
                .send(&h.method, &h.url, headers, body, self.timeout)
                .await
                .map(Sent::Http),
            (Request::Nats(p), Some(nats)) => nats.publish(p, self.timeout).await,
            (Request::Nats(_), None) => Err(SendError::Invalid(
                "a NATS publish cannot be sent by a destination without a NATS connection".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_carry_no_status_and_say_what_jetstream_said() {
        let ack = Sent::Nats(PubAck {
            stream: "EVENTS".into(),
            seq: 7,
            duplicate: true,
        });
        assert_eq!(ack.status(), None);
        assert_eq!(ack.response_text(), "stream EVENTS seq 7, duplicate");
        assert_eq!(classify(&Ok(ack)), Outcome::Delivered);
        assert_eq!(Sent::NatsCore.status(), None);
        assert!(matches!(
            classify(&Err(SendError::Timeout)),
            Outcome::Retry { .. }
        ));
        let http = Sent::Http(Response {
            status: 503,
            body_prefix: "busy".into(),
            retry_after: Some("3".into()),
            location: None,
        });
        assert_eq!(http.status(), Some(503));
        assert_eq!(
            classify(&Ok(http)),
            Outcome::Retry {
                reason: "HTTP 503".into(),
                retry_after: Some("3".into())
            }
        );
    }
}
