//! The bounded recent-events store behind `GET /api/v1/sources/{id}/events`: the last
//! `server.recent_events` records per source, accepted, rejected (with the reason) and
//! duplicate alike, so nothing that reaches Switchyard is silent. It is warmed from the
//! newest log segment at start-up, so a restart does not empty the debugger.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::log::record::{Kind, Record};

#[derive(Debug, Clone)]
pub struct RecentEvent {
    pub id: u64,
    pub status: Kind,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
    pub received_ms: i64,
    pub source: Arc<str>,
    pub environment: Arc<str>,
    pub message_id: String,
    /// The event's JSON bytes as logged (validated only when shown).
    pub event: Vec<u8>,
}

impl RecentEvent {
    /// Builds the debugger record of a log record.
    pub fn from_record(rec: Record) -> RecentEvent {
        let e = rec.entry;
        let (reason, warnings) = match e.kind {
            Kind::Accepted if e.reason.is_empty() => (None, Vec::new()),
            Kind::Accepted => (None, e.reason.split("; ").map(str::to_owned).collect()),
            _ => (Some(e.reason), Vec::new()),
        };
        RecentEvent {
            id: 0,
            status: e.kind,
            reason,
            warnings,
            received_ms: e.received_ms,
            source: e.source,
            environment: e.environment,
            message_id: e.message_id,
            event: e.body,
        }
    }
}

/// One entry of the API's list.
#[derive(Serialize)]
pub struct EventView<'a> {
    pub status: &'static str,
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
    pub received_at: String,
    pub source: &'a str,
    pub environment: &'a str,
    pub message_id: &'a str,
    /// `None` only if the logged body was not JSON.
    pub event: Option<Box<RawValue>>,
}

impl RecentEvent {
    pub fn view(&self) -> EventView<'_> {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.received_ms) * 1_000_000,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        EventView {
            status: self.status.as_str(),
            reason: self.reason.as_deref(),
            warnings: &self.warnings,
            received_at: crate::event::timestamp::format(at),
            source: &self.source,
            environment: &self.environment,
            message_id: &self.message_id,
            event: String::from_utf8(self.event.clone())
                .ok()
                .and_then(|s| RawValue::from_string(s).ok()),
        }
    }
}

/// Events a live subscriber may fall behind by before it is told how many it missed.
pub const LIVE_BUFFER: usize = 4096;

pub struct RecentStore {
    capacity: usize,
    next_id: AtomicU64,
    per_source: HashMap<String, Mutex<VecDeque<RecentEvent>>>,
    /// Every event as it is recorded, for `GET /api/v1/stream`; cloned only while someone
    /// listens.
    live: broadcast::Sender<Arc<RecentEvent>>,
    /// Cancelled when the server drains, which ends the live streams.
    closed: CancellationToken,
}

impl RecentStore {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a str>, capacity: usize) -> RecentStore {
        let per_source = sources
            .into_iter()
            .map(|s| (s.to_owned(), Mutex::new(VecDeque::new())))
            .collect();
        RecentStore {
            capacity: capacity.max(1),
            next_id: AtomicU64::new(1),
            per_source,
            live: broadcast::channel(LIVE_BUFFER).0,
            closed: CancellationToken::new(),
        }
    }

    /// A live feed of every event from now on, and the token that ends it at shutdown.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<RecentEvent>>, CancellationToken) {
        (self.live.subscribe(), self.closed.clone())
    }

    /// Ends the live feeds (the server is draining).
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn has_source(&self, id: &str) -> bool {
        self.per_source.contains_key(id)
    }

    pub fn push(&self, ev: RecentEvent) {
        let source = ev.source.clone();
        self.push_all(&source, std::iter::once(ev));
    }

    /// Pushes events of one source under one lock. Only the last `capacity` can be kept,
    /// so the older ones of a large batch are skipped without being stored.
    pub fn push_all(&self, source: &str, events: impl ExactSizeIterator<Item = RecentEvent>) {
        let Some(ring) = self.per_source.get(source) else {
            return;
        };
        let n = events.len();
        let first_id = self.next_id.fetch_add(n as u64, Ordering::Relaxed);
        let skip = n.saturating_sub(self.capacity);
        let mut live = Vec::new();
        let watched = self.live.receiver_count() > 0;
        {
            let mut ring = ring.lock().unwrap_or_else(|p| p.into_inner());
            for (i, mut ev) in events.enumerate() {
                ev.id = first_id + i as u64;
                if watched {
                    live.push(Arc::new(ev.clone()));
                }
                if i < skip {
                    continue;
                }
                if ring.len() == self.capacity {
                    ring.pop_front();
                }
                ring.push_back(ev);
            }
        }
        // Sent after the ring is unlocked, so watchers never hold up the debugger's list.
        for ev in live {
            // Err only when the last watcher left meanwhile.
            let _ = self.live.send(ev);
        }
    }

    /// Every kept record of `message_id`, newest first, in `source` or in any source.
    pub fn find(&self, source: Option<&str>, message_id: &str) -> Vec<RecentEvent> {
        let mut out = Vec::new();
        for (id, ring) in &self.per_source {
            if source.is_some_and(|s| s != id) {
                continue;
            }
            let ring = ring.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(ring.iter().filter(|e| e.message_id == message_id).cloned());
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.id));
        out
    }

    /// Newest first: up to `limit` events of `source` with `id < before`, optionally only
    /// those with `status`. Returns the page and the cursor of the next page.
    pub fn page(
        &self,
        source: &str,
        limit: usize,
        status: Option<Kind>,
        before: Option<u64>,
    ) -> (Vec<RecentEvent>, Option<u64>) {
        let Some(ring) = self.per_source.get(source) else {
            return (Vec::new(), None);
        };
        let ring = ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut matching = ring
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b))
            .filter(|e| status.is_none_or(|s| e.status == s));
        let page: Vec<RecentEvent> = matching.by_ref().take(limit).cloned().collect();
        let more = matching.next().is_some();
        let next = if more {
            page.last().map(|e| e.id)
        } else {
            None
        };
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::Entry;

    fn rec(source: &str, kind: Kind, mid: &str) -> RecentEvent {
        let entry = Entry {
            kind,
            received_ms: 1_700_000_000_000,
            source: source.into(),
            environment: "production".into(),
            message_id: mid.into(),
            reason: if kind == Kind::Rejected {
                "no_user_anon_id: needs an id".into()
            } else {
                String::new()
            },
            body: br#"{"type":"track"}"#.to_vec(),
        };
        RecentEvent::from_record(Record { seq: 0, entry })
    }

    #[test]
    fn bounded_newest_first_and_paged() {
        let store = RecentStore::new(["web"], 3);
        for i in 0..5 {
            store.push(rec(
                "web",
                if i % 2 == 0 {
                    Kind::Accepted
                } else {
                    Kind::Rejected
                },
                &format!("m{i}"),
            ));
        }
        store.push(rec("unknown", Kind::Accepted, "x"));
        let (page, next) = store.page("web", 2, None, None);
        let ids: Vec<_> = page.iter().map(|e| e.message_id.as_str()).collect();
        assert_eq!(ids, ["m4", "m3"]);
        let (page2, next2) = store.page("web", 2, None, next);
        assert_eq!(
            page2
                .iter()
                .map(|e| e.message_id.as_str())
                .collect::<Vec<_>>(),
            ["m2"]
        );
        assert_eq!(next2, None);
        let (rejected, _) = store.page("web", 10, Some(Kind::Rejected), None);
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            rejected[0].view().reason,
            Some("no_user_anon_id: needs an id")
        );
    }

    #[test]
    fn the_live_feed_gets_a_whole_batch_even_past_the_ring() {
        let store = RecentStore::new(["web"], 3);
        store.push(rec("web", Kind::Accepted, "before"));
        let (mut rx, closed) = store.subscribe();
        let batch: Vec<_> = (0..5)
            .map(|i| rec("web", Kind::Accepted, &format!("b{i}")))
            .collect();
        store.push_all("web", batch.into_iter());
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.message_id.clone())
            .collect();
        assert_eq!(
            got,
            ["b0", "b1", "b2", "b3", "b4"],
            "from the subscription on"
        );
        assert_eq!(
            store.page("web", 10, None, None).0.len(),
            3,
            "the ring stays bounded"
        );
        assert!(!closed.is_cancelled());
        store.close();
        assert!(closed.is_cancelled(), "draining ends the feeds");
    }
}
