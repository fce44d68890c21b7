//! Issue 12 item 6: stored rows carry a format version, and a store written before they did
//! (format 0: `tests/fixtures/stores-format0/`, written by the server as of commit 6054b28c —
//! a dead-lettered webhook delivery with its attempts, and a profile) opens and reads with
//! every row, and takes new rows beside the old ones.

use std::io::Read;
use std::path::Path;

use switchyard::delivery::store::{DeadLetter, DeliveryStore, Pending};
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
        !dead[0].delivery.request.body.is_empty(),
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
