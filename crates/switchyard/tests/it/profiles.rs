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

/// Issue 11 item 12: `context.traits` of an event whose anonymousId was merged into a known
/// user lands on that user's profile, on every merge path, whether the events come in one
/// request or one by one (each its own batch for the profile store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_traits_of_a_merged_anonymous_id_land_on_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &config_yaml(dir.path(), "")).await;
    let ts = |d: u32| format!("2026-11-{d:02}T10:00:00.000Z");
    let paths = |p: &str| {
        let (u, a) = (format!("{p}-user"), format!("{p}-anon"));
        let trait_of = |n: u32| json!({"context": {"traits": {format!("t{n}"): n}}});
        let with = |mut e: Value, extra: Value| {
            e.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            e
        };
        vec![
            // alias then anonymous track
            vec![
                json!({"type": "alias", "userId": u, "previousId": a, "messageId": format!("{p}-1"), "timestamp": ts(1)}),
                with(
                    json!({"type": "track", "event": "E", "anonymousId": a, "messageId": format!("{p}-2"), "timestamp": ts(2)}),
                    trait_of(1),
                ),
            ],
            // identify (with the anonymousId) then anonymous track
            vec![
                json!({"type": "identify", "userId": u, "anonymousId": format!("{a}-b"), "messageId": format!("{p}-3"), "timestamp": ts(3)}),
                with(
                    json!({"type": "track", "event": "E", "anonymousId": format!("{a}-b"), "messageId": format!("{p}-4"), "timestamp": ts(4)}),
                    trait_of(2),
                ),
            ],
            // anonymous track then identify
            vec![
                with(
                    json!({"type": "track", "event": "E", "anonymousId": format!("{a}-c"), "messageId": format!("{p}-5"), "timestamp": ts(5)}),
                    trait_of(3),
                ),
                json!({"type": "identify", "userId": u, "anonymousId": format!("{a}-c"), "messageId": format!("{p}-6"), "timestamp": ts(6)}),
            ],
        ]
    };
    // "one": every path in one request; "each": one request per event, waiting for each.
    let one: Vec<Value> = paths("one").into_iter().flatten().collect();
    assert_eq!(
        app.post_json("/v1/batch", &json!({"batch": one})).await.0,
        StatusCode::OK
    );
    for e in paths("each").into_iter().flatten() {
        assert_eq!(
            app.post_json("/v1/batch", &json!({"batch": [e]})).await.0,
            StatusCode::OK
        );
        profiles_caught_up(&app).await;
    }
    for p in ["one", "each"] {
        let user = format!("{p}-user");
        let got = profile_when(&app, &user, |v| v["event_counts"]["identify"] == 2).await;
        for t in ["t1", "t2", "t3"] {
            assert!(
                got["traits"][t]["value"].is_number(),
                "{p}: {t} on the user: {got}"
            );
        }
        // Looked up by each anonymous id, the user's profile answers.
        for anon in [
            format!("{p}-anon"),
            format!("{p}-anon-b"),
            format!("{p}-anon-c"),
        ] {
            let (status, found) = app.get(&format!("/api/v1/profiles/{anon}")).await;
            assert_eq!(
                (status, &found["id"]),
                (StatusCode::OK, &json!(user)),
                "{p}: {anon}: {found}"
            );
        }
    }
    app.stop().await;
}

/// Waits until the profile store has applied every logged event.
async fn profiles_caught_up(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        if report["profiles"]["backlog"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "profiles never caught up: {}",
            report["profiles"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 11 item 13: an identify with one value the store cannot keep (a number out of
/// range, in a log written before ingest refused it) keeps its other traits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_trait_value_does_not_cost_the_others() {
    use switchyard::log::record::Kind;
    let dir = tempfile::tempdir().unwrap();
    crate::old_log::write(
        dir.path(),
        &[(
            Kind::Accepted,
            "old-identify",
            r#"{"type":"identify","userId":"u-odd","messageId":"old-identify","timestamp":"2026-11-01T10:00:00.000Z","traits":{"plan":"pro","big":1e400,"email":"a@b.c"}}"#,
        )],
    );
    let app = TestApp::start_with(dir.path(), &config_yaml(dir.path(), "")).await;
    let p = profile_when(&app, "u-odd", |p| p["event_counts"]["identify"] == 1).await;
    assert_eq!(p["traits"]["plan"]["value"], "pro", "{p}");
    assert_eq!(p["traits"]["email"]["value"], "a@b.c", "{p}");
    assert!(p["traits"].get("big").is_none(), "{p}");
    app.stop().await;
}
