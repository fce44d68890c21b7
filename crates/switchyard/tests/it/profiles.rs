//! Profiles through the API: identify, alias, group and inline traits build one profile per
//! person, across anonymous ids; lookups by trait; and a restart keeps them without counting
//! any event twice.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

async fn profile_when(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, p) = app.get(&format!("/api/v1/profiles/{id}")).await;
        if status == StatusCode::OK && done(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "profile {id} never got there: {status} {p}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_alias_group_and_inline_traits_make_one_profile() {
    let dir = tempfile::tempdir().unwrap();
    // Profiles are on by default.
    let yaml = config_yaml(dir.path(), "");
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let ts = |d: u32| format!("2026-11-{d:02}T10:00:00.000Z");
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "anon-2", "name": "Pricing", "messageId": "p-1", "timestamp": ts(1)},
        {"type": "identify", "userId": "old-id", "messageId": "i-0", "timestamp": ts(2), "traits": {"company": "Initech"}},
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "messageId": "i-1", "timestamp": ts(3),
         "traits": {"email": "ada@example.com", "plan": "free"}},
        {"type": "track", "userId": "u1", "anonymousId": "anon-2", "event": "Upgraded", "messageId": "t-1", "timestamp": ts(4),
         "context": {"traits": {"plan": "pro"}}},
        {"type": "alias", "userId": "u1", "previousId": "old-id", "messageId": "a-1", "timestamp": ts(5)},
        {"type": "group", "userId": "u1", "groupId": "g-1", "messageId": "g-1", "timestamp": ts(6), "traits": {"name": "Acme"}}
    ]});
    assert_eq!(app.post_json("/v1/batch", &batch).await.0, StatusCode::OK);
    let p = profile_when(&app, "u1", |p| p["event_counts"]["group"] == 1).await;
    assert_eq!(p["id"], "u1");
    assert_eq!(p["traits"]["email"]["value"], "ada@example.com");
    assert_eq!(
        p["traits"]["plan"]["value"], "pro",
        "inline context.traits update the profile"
    );
    assert_eq!(p["traits"]["plan"]["set_at"], ts(4));
    assert_eq!(
        p["traits"]["company"]["value"], "Initech",
        "the aliased id's profile was folded in"
    );
    let ids = |k: &str| -> Vec<String> {
        let mut v: Vec<String> = p[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids("anonymous_ids"), ["anon-1", "anon-2"]);
    assert_eq!(ids("user_ids"), ["old-id", "u1"]);
    assert_eq!(p["groups"][0]["group_id"], "g-1");
    assert_eq!(
        p["event_counts"],
        json!({"alias": 1, "group": 1, "identify": 2, "page": 1, "track": 1})
    );
    assert_eq!(
        (p["first_seen"].as_str(), p["last_seen"].as_str()),
        (Some(ts(1).as_str()), Some(ts(6).as_str()))
    );
    let recent: Vec<_> = p["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(recent, ["g-1", "a-1", "t-1", "i-1", "i-0", "p-1"]);
    // The store's lag is visible, and it is nothing once caught up.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = app.get("/metrics").await;
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        if metrics
            .lines()
            .any(|l| l == "switchyard_profiles_backlog_events 0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every identity leads to the same profile; a trait finds it too.
    for id in ["anon-1", "anon-2", "old-id"] {
        let (status, q) = app.get(&format!("/api/v1/profiles/{id}")).await;
        assert_eq!((status, &q["id"]), (StatusCode::OK, &json!("u1")), "{id}");
    }
    let (status, found) = app
        .get("/api/v1/profiles?trait.email=ada@example.com")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["profiles"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["profiles"][0]["id"], "u1");
    let (_, none) = app.get("/api/v1/profiles?trait.plan=free").await;
    assert_eq!(
        none["profiles"],
        json!([]),
        "the index follows the latest value"
    );
    assert_eq!(
        app.get("/api/v1/profiles/nobody").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/v1/profiles").await.0, StatusCode::BAD_REQUEST);
    app.stop().await;
    // A restart keeps the profiles and counts nothing twice.
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let more = json!({"type": "track", "userId": "u1", "event": "Again", "messageId": "t-2", "timestamp": ts(7)});
    assert_eq!(app.post_json("/v1/track", &more).await.0, StatusCode::OK);
    let p = profile_when(&app, "u1", |p| p["event_counts"]["track"] == 2).await;
    assert_eq!(p["event_counts"]["identify"], 2);
    assert_eq!(p["traits"]["email"]["value"], "ada@example.com");
    app.stop().await;
}

#[tokio::test]
async fn the_profile_store_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        config_yaml(dir.path(), "").replace("sources:", "storage: { profiles: false }\nsources:");
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let (status, body) = app.get("/api/v1/profiles/u1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("storage.profiles"),
        "{body}"
    );
}
