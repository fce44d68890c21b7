//! Issue 12 item 6: stored rows carry a format version, and a store written before they did
//! (format 0: `tests/fixtures/stores-format0/`, written by the server as of commit 6054b28c —
//! a dead-lettered webhook delivery with its attempts, and a profile) opens and reads with
//! every row, and takes new rows beside the old ones. Issue 12 item 2: rows written before
//! requests were typed by transport (a NATS publish stored as pseudo-HTTP) read as typed
//! requests.

use std::io::Read;
use std::path::Path;

use switchyard::delivery::store::{
    DeadLetter, DeliveryStore, HttpRequest, NatsPublish, Pending, Request,
};
use switchyard::profiles::ProfileStore;
use switchyard::webhooks::store::WebhookStore;

fn unpack(into: &Path, name: &str) -> std::path::PathBuf {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stores-format0")
        .join(format!("{name}.redb.gz"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let path = into.join(format!("{name}.redb"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn stores_written_before_rows_had_a_version_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let deliveries = DeliveryStore::open(&unpack(dir.path(), "deliveries")).unwrap();
    let dead = deliveries.dead_letters("hook", 10, None).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].delivery.message_id, "fx-t1");
    assert!(
        dead[0].reason.starts_with("retry.max_age (1s) exceeded"),
        "{}",
        dead[0].reason
    );
    assert!(
        !dead[0].delivery.request.body().is_empty(),
        "the request is kept for replay"
    );
    let attempts = deliveries.attempts("hook", 100, None).unwrap();
    assert!(attempts.len() >= 2 && attempts.iter().all(|a| a.message_id == "fx-t1"));

    // A new row beside the old one; both read.
    let mut new = dead[0].clone();
    new.delivery = Pending {
        id: 0,
        message_id: "fx-new".into(),
        ..new.delivery
    };
    deliveries
        .dead_letter(
            "hook",
            DeadLetter {
                reason: "HTTP 400".into(),
                ..new
            },
        )
        .unwrap();
    let dead = deliveries.dead_letters("hook", 10, None).unwrap();
    let ids: Vec<&str> = dead
        .iter()
        .map(|d| d.delivery.message_id.as_str())
        .collect();
    assert_eq!(ids, ["fx-new", "fx-t1"]);

    let profiles = ProfileStore::open(&unpack(dir.path(), "profiles")).unwrap();
    let p = profiles.get("u-fx").unwrap().expect("the profile");
    assert_eq!(p.traits["email"].value, "fx@example.com");
    assert_eq!(
        profiles.get("a-fx").unwrap().map(|p| p.id),
        Some("u-fx".into())
    );

    let webhooks = WebhookStore::open(&unpack(dir.path(), "webhooks")).unwrap();
    assert!(webhooks.dead_letters("web", 10).unwrap().is_empty());
    // Nothing was taken for damage.
    assert!(!dir.path().join("quarantine").exists());
}

/// A retry and a dead letter as written before requests were typed by transport: a NATS
/// publish as pseudo-HTTP (`PUBLISH` to the subject, id in a `Nats-Msg-Id` header), an HTTP
/// request as the plain struct; one row with the format byte, one without (format 0).
const OLD_NATS_RETRY: &str = r#"{"id":1,"seq":4,"source":"web","message_id":"n-1","mapping":"nats","received_ms":1000,
  "request":{"url":"events.track","method":"PUBLISH","headers":[["Nats-Msg-Id","abc123"]],"body":"{\"type\":\"track\"}","signed":""},
  "attempts":2,"next_at_ms":5000,"last_error":"timed out"}"#;
const OLD_HTTP_DEAD: &str = r#"{"id":2,"seq":5,"source":"web","message_id":"h-1","mapping":"Send","received_ms":1000,
  "request":{"url":"https://hooks.example/u1","method":"POST","headers":[["content-type","application/json"],["idempotency-key","h-1"]],"body":"{\"a\":1}","signed":"{\"a\":1}"},
  "attempts":1,"next_at_ms":0,"last_status":400,"reason":"HTTP 400","dead_at_ms":2000}"#;

/// A `deliveries.redb` as an earlier version left it: `retries` rows with the format byte,
/// `dead_letters` rows without (format 0), each `(destination, id, JSON)`.
pub fn write_old_store(path: &Path, retries: &[(&str, u64, &str)], dead: &[(&str, u64, &str)]) {
    type Rows = redb::TableDefinition<'static, (&'static str, u64), &'static [u8]>;
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(Rows::new("retries")).unwrap();
        for (dest, id, json) in retries {
            let mut row = vec![1u8];
            row.extend_from_slice(json.as_bytes());
            table.insert((*dest, *id), row.as_slice()).unwrap();
        }
        let mut table = txn.open_table(Rows::new("dead_letters")).unwrap();
        for (dest, id, json) in dead {
            table.insert((*dest, *id), json.as_bytes()).unwrap();
        }
        txn.open_table(Rows::new("attempts")).unwrap();
        let mut meta = txn
            .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap();
        let next = retries.iter().chain(dead).map(|r| r.1).max().unwrap_or(0) + 1;
        meta.insert("delivery", next).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn rows_written_before_requests_were_typed_read_as_typed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deliveries.redb");
    write_old_store(
        &path,
        &[("stream", 1, OLD_NATS_RETRY)],
        &[("hook", 2, OLD_HTTP_DEAD)],
    );
    let store = DeliveryStore::open(&path).unwrap();

    let retries = store.retries("stream").unwrap();
    assert_eq!(retries.len(), 1, "{retries:?}");
    let nats = NatsPublish {
        subject: "events.track".into(),
        msg_id: "abc123".into(),
        body: r#"{"type":"track"}"#.into(),
    };
    assert_eq!(retries[0].request, Request::Nats(nats.clone()));
    assert_eq!((retries[0].attempts, retries[0].next_at_ms), (2, 5000));

    let dead = store.dead_letters("hook", 10, None).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let http = HttpRequest {
        url: "https://hooks.example/u1".into(),
        method: "POST".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("idempotency-key".into(), "h-1".into()),
        ],
        body: r#"{"a":1}"#.into(),
        signed: r#"{"a":1}"#.into(),
    };
    assert_eq!(dead[0].delivery.request, Request::Http(http.clone()));
    assert!(!dead[0].is_reference());

    // Stored again (the next attempt failed), the publish is written in the typed shape and
    // still reads; the replayed dead letter keeps its HTTP request.
    let mut again = retries[0].clone();
    again.attempts = 3;
    store.put_retry("stream", &mut again).unwrap();
    assert_eq!(
        store.retries("stream").unwrap()[0].request,
        Request::Nats(nats)
    );
    let (moved, _) = store.replay_dead_letters("hook", 9, |_| true).unwrap();
    assert_eq!(moved[0].request, Request::Http(http.clone()));
    drop(store);
    let store = DeliveryStore::open(&path).unwrap();
    assert_eq!(
        store.retries("hook").unwrap()[0].request,
        Request::Http(http)
    );
    assert!(!dir.path().join("quarantine").exists());
}
