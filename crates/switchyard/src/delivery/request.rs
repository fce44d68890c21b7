//! The request a delivery makes, typed by transport: an HTTP request (webhook, segment) or
//! a NATS publish. It is planned once and kept with the delivery (in the retry set and the
//! dead-letter queue of `deliveries.redb`), so every attempt sends the same bytes.
//!
//! Stored shape, and why it reads rows written before requests were typed:
//! - An HTTP request is stored exactly as before: `{"url", "method", "headers", "body",
//!   "signed"}`, so HTTP rows are the same bytes in both directions.
//! - A NATS publish is stored as `{"nats": {"subject", "msg_id", "body"}}`.
//! - Earlier versions stored a NATS publish as a pseudo-HTTP request: `method: "PUBLISH"`,
//!   the subject as `url`, and its id in a `Nats-Msg-Id` header (none when the event could
//!   not be read and nothing was built). Such a row is read as the NATS publish it is. No
//!   HTTP request has that method (a webhook mapping's is POST, PUT or PATCH, checked in
//!   `delivery/config.rs`; segment forwarding POSTs), so the reading is unambiguous.
//!   Rows keep `redb_store::ROW_FORMAT`: the JSON tells the shapes apart, so no format bump
//!   (which every store shares) is needed, and HTTP rows stay readable by older versions.

use serde::{Deserialize, Serialize};

/// What a delivery sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub enum Request {
    Http(HttpRequest),
    Nats(NatsPublish),
}

/// A built HTTP request (webhook or segment).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HttpRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The bytes `X-Signature` covers (the body, or the first element of a batch).
    pub signed: String,
}

/// A JetStream (or core NATS) publish of one event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NatsPublish {
    /// The rendered subject.
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a repeat of it, so retries and replays do not duplicate.
    pub msg_id: String,
    /// The event exactly as logged.
    pub body: String,
}

/// A reference dead letter (`backlog_overflow`, `log_damage`) holds no request: the empty
/// HTTP request, which is not stored at all (see `Pending::request`).
impl Default for Request {
    fn default() -> Request {
        Request::Http(HttpRequest::default())
    }
}

/// The header an earlier version stored a NATS publish's id in.
const LEGACY_MSG_ID: &str = "Nats-Msg-Id";
/// The method an earlier version stored a NATS publish with.
const LEGACY_PUBLISH: &str = "PUBLISH";

impl Request {
    /// No request was built: a `backlog_overflow` reference holds none.
    pub fn is_empty(&self) -> bool {
        match self {
            Request::Http(h) => h.url.is_empty() && h.method.is_empty() && h.body.is_empty(),
            Request::Nats(_) => false,
        }
    }

    /// The bytes sent (an HTTP body before any per-attempt wrapping, or the published event).
    pub fn body(&self) -> &str {
        match self {
            Request::Http(h) => &h.body,
            Request::Nats(n) => &n.body,
        }
    }

    /// Where it goes, as the delivery log's `url` shows it: the URL, or the subject.
    pub fn target(&self) -> &str {
        match self {
            Request::Http(h) => &h.url,
            Request::Nats(n) => &n.subject,
        }
    }

    /// The HTTP request, when this is one (batching applies to HTTP requests only).
    pub fn as_http(&self) -> Option<&HttpRequest> {
        match self {
            Request::Http(h) => Some(h),
            Request::Nats(_) => None,
        }
    }

    /// The request as the admin API has always shown it (`method`, `url`, `headers`,
    /// `body`): a NATS publish shows as method `PUBLISH` to its subject with its
    /// `Nats-Msg-Id` header, so API clients see the same fields as before requests were typed.
    pub fn shown(&self) -> HttpRequest {
        match self {
            Request::Http(h) => h.clone(),
            Request::Nats(n) => HttpRequest {
                url: n.subject.clone(),
                method: LEGACY_PUBLISH.into(),
                headers: match n.msg_id.as_str() {
                    "" => Vec::new(),
                    id => vec![(LEGACY_MSG_ID.into(), id.to_owned())],
                },
                body: n.body.clone(),
                signed: String::new(),
            },
        }
    }
}

/// The stored JSON of a [`Request`] (see the module comment).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Nats { nats: NatsPublish },
    Http(HttpRequest),
}

impl From<Stored> for Request {
    fn from(s: Stored) -> Request {
        match s {
            Stored::Nats { nats } => Request::Nats(nats),
            Stored::Http(h) => match legacy_nats(&h) {
                Some(msg_id) => Request::Nats(NatsPublish {
                    subject: h.url,
                    msg_id,
                    body: h.body,
                }),
                None => Request::Http(h),
            },
        }
    }
}

impl From<Request> for Stored {
    fn from(r: Request) -> Stored {
        match r {
            Request::Http(h) => Stored::Http(h),
            Request::Nats(nats) => Stored::Nats { nats },
        }
    }
}

/// The message id of a NATS publish stored by an earlier version as pseudo-HTTP (empty
/// when none was built).
fn legacy_nats(h: &HttpRequest) -> Option<String> {
    if h.method != LEGACY_PUBLISH {
        return None;
    }
    let id = h.headers.iter().find(|(k, _)| k == LEGACY_MSG_ID);
    Some(id.map(|(_, v)| v.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> HttpRequest {
        HttpRequest {
            url: "https://hooks.example/u1".into(),
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{}".into(),
            signed: "{}".into(),
        }
    }

    #[test]
    fn http_requests_keep_their_stored_shape() {
        let r = Request::Http(http());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json, serde_json::to_value(http()).unwrap());
        assert_eq!(serde_json::from_value::<Request>(json).unwrap(), r);
    }

    #[test]
    fn nats_publishes_round_trip_and_legacy_pseudo_http_reads_as_nats() {
        let n = NatsPublish {
            subject: "events.track".into(),
            msg_id: "abc".into(),
            body: r#"{"type":"track"}"#.into(),
        };
        let r = Request::Nats(n.clone());
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("PUBLISH"), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        let legacy = r#"{"url":"events.track","method":"PUBLISH","headers":[["Nats-Msg-Id","abc"]],"body":"{\"type\":\"track\"}","signed":""}"#;
        assert_eq!(serde_json::from_str::<Request>(legacy).unwrap(), r);
        assert_eq!(
            serde_json::to_string(&r.shown()).unwrap(),
            legacy,
            "the API shows a publish as before"
        );
    }
}
