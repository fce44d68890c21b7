//! Batching for mappings with `batch_size > 0` (docs/destinations.md#batching): deliveries whose
//! mapped URL, method and headers are identical share one request. Its body is the JSON
//! array of each event's data; `X-Signature` covers the first element only, as Segment
//! signs; `Idempotency-Key` is a stable id derived from the members' messageIds. Members are
//! kept with the delivery, so a batch in the retry set survives a restart whole.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::store::{HttpRequest, Member, Pending, Request};

struct Open {
    first_at_ms: i64,
    size: usize,
    items: Vec<Pending>,
}

/// What makes deliveries batchable together: mapping, URL, method and headers (without
/// the per-event `Idempotency-Key`).
type Key = (String, String, String, Vec<(String, String)>);

#[derive(Default)]
pub struct Batcher {
    open: HashMap<Key, Open>,
}

/// The HTTP request of a delivery. Only HTTP deliveries are batched (`plan.rs` sends a NATS
/// publish on its own), so the empty request stands in for anything else.
fn http(p: &Pending) -> std::borrow::Cow<'_, HttpRequest> {
    match p.request.as_http() {
        Some(h) => std::borrow::Cow::Borrowed(h),
        None => std::borrow::Cow::Owned(HttpRequest::default()),
    }
}

/// A delivery's headers without its own `Idempotency-Key`.
fn shared_headers(p: &Pending) -> Vec<(String, String)> {
    http(p)
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("idempotency-key"))
        .cloned()
        .collect()
}

fn key(p: &Pending) -> Key {
    let req = http(p);
    (
        p.mapping.clone(),
        req.url.clone(),
        req.method.clone(),
        shared_headers(p),
    )
}

impl Batcher {
    /// Adds a single delivery; returns the sealed batch when it reaches `size`.
    pub fn add(&mut self, p: Pending, size: usize, now_ms: i64) -> Option<Pending> {
        let k = key(&p);
        let open = self.open.entry(k.clone()).or_insert_with(|| Open {
            first_at_ms: now_ms,
            size,
            items: Vec::new(),
        });
        open.items.push(p);
        if open.items.len() >= open.size {
            return self.open.remove(&k).map(|o| seal(o.items));
        }
        None
    }

    /// Seals every batch that has waited `linger_ms` or more.
    pub fn due(&mut self, now_ms: i64, linger_ms: i64) -> Vec<Pending> {
        let ready: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.first_at_ms + linger_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        ready
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .map(|o| seal(o.items))
            .collect()
    }

    pub fn next_deadline(&self, linger_ms: i64) -> Option<i64> {
        self.open.values().map(|o| o.first_at_ms + linger_ms).min()
    }
}

/// One request for the items, in order.
fn seal(items: Vec<Pending>) -> Pending {
    let members: Vec<Member> = items
        .iter()
        .map(|p| Member {
            seq: p.seq,
            message_id: p.message_id.clone(),
        })
        .collect();
    let digest = Sha256::digest(
        members
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    let batch_id = format!("batch_{}", &hex::encode(digest)[..32]);
    let first = &items[0];
    let body = format!(
        "[{}]",
        items
            .iter()
            .map(|p| p.request.body())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut headers = shared_headers(first);
    headers.push(("idempotency-key".into(), batch_id.clone()));
    Pending {
        id: 0,
        seq: first.seq,
        source: first.source.clone(),
        message_id: batch_id,
        mapping: first.mapping.clone(),
        received_ms: items
            .iter()
            .map(|p| p.received_ms)
            .min()
            .unwrap_or(first.received_ms),
        request: Request::Http(HttpRequest {
            url: http(first).url.clone(),
            method: http(first).method.clone(),
            headers,
            signed: first.request.body().to_owned(),
            body,
        }),
        attempts: 0,
        next_at_ms: 0,
        last_status: None,
        last_error: None,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(seq: u64, url: &str, body: &str) -> Pending {
        Pending {
            id: 0,
            seq,
            source: "web".into(),
            message_id: format!("m-{seq}"),
            mapping: "m".into(),
            received_ms: 1000 + seq as i64,
            request: Request::Http(HttpRequest {
                url: url.into(),
                method: "POST".into(),
                headers: vec![
                    ("idempotency-key".into(), format!("m-{seq}")),
                    ("x-env".into(), "prod".into()),
                ],
                body: body.into(),
                signed: body.into(),
            }),
            attempts: 0,
            next_at_ms: 0,
            last_status: None,
            last_error: None,
            members: Vec::new(),
        }
    }

    #[test]
    fn batches_by_url_and_seal_at_size_or_linger() {
        let mut b = Batcher::default();
        assert!(
            b.add(single(1, "http://a/", r#"{"cool":false}"#), 2, 0)
                .is_none()
        );
        assert!(
            b.add(single(2, "http://b/", r#"{"x":2}"#), 2, 5).is_none(),
            "another URL is another batch"
        );
        let full = b
            .add(single(3, "http://a/", r#"{"cool":true}"#), 2, 10)
            .expect("full at two");
        let req = full.request.as_http().expect("an HTTP batch");
        assert_eq!(req.body, r#"[{"cool":false},{"cool":true}]"#);
        assert_eq!(
            req.signed, r#"{"cool":false}"#,
            "only the first element is signed"
        );
        assert_eq!(
            crate::signing::segment_signature("abc123", req.signed.as_bytes()),
            "c702b94a2569dd8d2f7185ce0ae951021bef4706"
        );
        assert_eq!(
            full.members.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert!(full.message_id.starts_with("batch_"));
        assert_eq!(
            req.headers
                .iter()
                .filter(|(k, _)| k == "idempotency-key")
                .count(),
            1
        );
        assert_eq!(full.received_ms, 1001);
        assert_eq!(b.next_deadline(100), Some(105));
        assert!(b.due(104, 100).is_empty());
        let due = b.due(105, 100);
        assert_eq!((due.len(), due[0].request.body()), (1, r#"[{"x":2}]"#));
        let again = seal(vec![
            single(1, "http://a/", "{}"),
            single(3, "http://a/", "{}"),
        ]);
        assert_eq!(again.message_id, full.message_id, "the batch id is stable");
    }
}
