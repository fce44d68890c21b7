//! Knock-style idempotency (docs/sources.md#idempotency). A key is scoped by source, environment
//! and event type; only successful executions are recorded; a replay inside the window is answered
//! 2xx and does nothing. Keys live in memory (bounded) and are saved to `webhooks.redb` about once
//! a second, so a restart keeps them. A key is claimed while its request runs: a second request
//! with the same key meanwhile is answered 409 with `Retry-After`, instead of running twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::WebhookStore;

/// Keys held at most; past this, new keys are not recorded (the event is still processed,
/// and the log's messageId dedupe remains), and a warning is logged.
pub const MAX_KEYS: usize = 2_000_000;
/// Keys longer than this are not used (Knock's rule).
pub const MAX_KEY_CHARS: usize = 255;

pub type KeyHash = [u8; 16];

pub struct Guard {
    seen: Mutex<HashMap<KeyHash, i64>>,
    unsaved: Mutex<Vec<(KeyHash, i64)>>,
    /// Keys whose request is running now.
    running: Mutex<HashSet<KeyHash>>,
}

/// What `Guard::claim` found.
pub enum Claim<'g> {
    /// The key succeeded within its window: a replay.
    Done,
    /// A request with this key is running now.
    Busy,
    /// Ours until dropped; `succeed` records it.
    Mine(Claimed<'g>),
}

/// A key held while its request runs; dropping it without `succeed` lets the key be tried
/// again.
pub struct Claimed<'g> {
    guard: &'g Guard,
    key: KeyHash,
}

impl Claimed<'_> {
    /// Records the successful execution (the key is then a replay until `expires_ms`).
    pub fn succeed(self, expires_ms: i64) {
        self.guard.record(self.key, expires_ms);
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        let mut running = self.guard.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
    }
}

/// What the key path found in a payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    Found(String),
    /// No value at the path: processed normally.
    Absent,
    /// Not a string, or too long: processed without idempotency, and logged.
    Unusable(String),
}

/// Reads the idempotency key at `path` in `value`.
pub fn lookup(value: &Value, path: &[String]) -> Key {
    let mut cur = value;
    for seg in path {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return Key::Absent,
        }
    }
    match cur {
        Value::Null => Key::Absent,
        Value::String(s) if s.chars().count() <= MAX_KEY_CHARS => Key::Found(s.clone()),
        Value::String(s) => Key::Unusable(format!(
            "idempotency key is {} characters (limit {MAX_KEY_CHARS})",
            s.chars().count()
        )),
        other => Key::Unusable(format!("idempotency key is not a string: {other}")),
    }
}

pub fn hash(source: &str, environment: &str, kind: &str, key: &str) -> KeyHash {
    let digest = Sha256::digest(format!("{source}\0{environment}\0{kind}\0{key}").as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl Guard {
    pub fn load(store: &WebhookStore, now_ms: i64) -> Result<Guard, super::store::StoreError> {
        let seen = store.load_keys(now_ms)?.into_iter().collect();
        Ok(Guard {
            seen: Mutex::new(seen),
            unsaved: Mutex::new(Vec::new()),
            running: Mutex::new(HashSet::new()),
        })
    }

    /// Claims `key` for a request about to run (see `Claim`).
    pub fn claim(&self, key: KeyHash, now_ms: i64) -> Claim<'_> {
        // Lock order: `seen`, then `running`; `record` and `Claimed::drop` take one each.
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(&key).is_some_and(|exp| *exp > now_ms) {
            return Claim::Done;
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !running.insert(key) {
            return Claim::Busy;
        }
        Claim::Mine(Claimed { guard: self, key })
    }

    /// Records a successful execution.
    pub fn record(&self, key: KeyHash, expires_ms: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
            tracing::warn!("idempotency key set is full ({MAX_KEYS}); this key is not recorded");
            return;
        }
        seen.insert(key, expires_ms);
        drop(seen);
        self.unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, expires_ms));
    }

    /// Saves new keys and forgets expired ones (called about once a second).
    pub fn save(&self, store: &WebhookStore, now_ms: i64, prune: bool) {
        let new = std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()));
        if prune {
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, exp| *exp > now_ms);
        }
        if new.is_empty() && !prune {
            return;
        }
        if let Err(error) = store.save_keys(&new, prune.then_some(now_ms)) {
            tracing::error!(%error, "could not save idempotency keys");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_lookup_rules() {
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        let ev = json!({"messageId": "m1", "data": {"id": 7, "long": "x".repeat(256)}});
        assert_eq!(lookup(&ev, &path("messageId")), Key::Found("m1".into()));
        assert_eq!(lookup(&ev, &path("nope")), Key::Absent);
        assert!(
            matches!(lookup(&ev, &path("data.id")), Key::Unusable(m) if m.contains("not a string"))
        );
        assert!(matches!(lookup(&ev, &path("data.long")), Key::Unusable(m) if m.contains("256")));
        assert_ne!(
            hash("s", "production", "track", "k"),
            hash("s", "production", "identify", "k")
        );
    }

    /// Whether `key` is a replay at `now` (a claim that is not kept).
    fn done(g: &Guard, k: KeyHash, now: i64) -> bool {
        matches!(g.claim(k, now), Claim::Done)
    }

    #[test]
    fn a_key_is_held_while_its_request_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = WebhookStore::open(&dir.path().join("w.redb")).unwrap();
        let g = Guard::load(&store, 0).unwrap();
        let k = hash("s", "e", "request", "k1");
        let Claim::Mine(first) = g.claim(k, 0) else {
            panic!("a new key is ours")
        };
        assert!(matches!(g.claim(k, 0), Claim::Busy), "held while it runs");
        drop(first);
        let Claim::Mine(again) = g.claim(k, 0) else {
            panic!("a failed run lets the key be tried again")
        };
        again.succeed(1_000);
        assert!(done(&g, k, 10), "then it is a replay");
        assert!(
            matches!(g.claim(k, 1_000), Claim::Mine(_)),
            "until its window ends"
        );
    }

    #[test]
    fn window_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let store = WebhookStore::open(&dir.path().join("w.redb")).unwrap();
        let g = Guard::load(&store, 0).unwrap();
        let k = hash("s", "e", "track", "k1");
        assert!(!done(&g, k, 100));
        g.record(k, 1_000);
        assert!(
            done(&g, k, 999) && !done(&g, k, 1_000),
            "expires at the window's end"
        );
        g.save(&store, 100, false);
        drop(g);
        let again = Guard::load(&store, 500).unwrap();
        assert!(done(&again, k, 500), "keys survive a restart");
        again.save(&store, 2_000, true);
        assert!(
            !done(&Guard::load(&store, 0).unwrap(), k, 0),
            "expired keys are pruned"
        );
    }
}
