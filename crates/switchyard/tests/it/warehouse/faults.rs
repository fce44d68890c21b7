//! The `postgres` destination against input Postgres cannot take: NUL characters, rows it
//! refuses (constraints, limits), too many columns, and log records that cannot be read.
//! Each must end as a loaded row or a row of `_switchyard_discards`, and never stop the
//! rows behind it.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio_postgres::Client;

use super::{count, fresh_db, wait_rows, yaml};
use crate::harness::*;

/// `(table_name, column_name, row_id, value, reason)` of every discard, ordered.
async fn discards(db: &Client) -> Vec<(String, String, String, String, String)> {
    db.query(
        "SELECT table_name, column_name, row_id, coalesce(value, ''), reason \
         FROM web._switchyard_discards ORDER BY table_name, row_id, column_name",
        &[],
    )
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    })
    .unwrap_or_default()
}

async fn wait_discards(db: &Client, n: usize) -> Vec<(String, String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = discards(db).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} discards, want {n}: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_row(db: &Client, sql: &str) -> tokio_postgres::Row {
    db.query_one(sql, &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_removed_and_later_batches_load() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let first = json!({"batch": [
        {"type": "track", "event": "Sign\u{0}Up", "userId": "u\u{0}1", "messageId": "n-1",
         "properties": {"note": "a\u{0}b", "x\u{0}y": 1, "nested": {"deep": "c\u{0}d"},
                        "tags": ["a\u{0}b", {"k\u{0}": "v\u{0}"}]},
         "context": {"userAgent": "UA\u{0}"}},
        {"type": "identify", "userId": "u\u{0}2", "messageId": "n-2", "traits": {"name": "Ada\u{0}"}},
        {"type": "track", "event": "Plain", "userId": "u3", "messageId": "n-3"}
    ]});
    assert_eq!(app.post_json("/v1/batch", &first).await.0, StatusCode::OK);
    wait_rows(&db, "web.plain", 1).await;
    let r = one_row(
        &db,
        "SELECT event, event_text, user_id, note, x_y, nested_deep, tags, context_user_agent \
         FROM web.sign_up",
    )
    .await;
    let got: (String, String, String, String, i64, String, String, String) = (
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
    );
    assert_eq!(
        got,
        (
            "sign_up".into(),
            "SignUp".into(),
            "u1".into(),
            "ab".into(),
            1,
            "cd".into(),
            r#"["ab",{"k":"v"}]"#.into(),
            "UA".into()
        ),
        "U+0000 is removed from values, names and JSON text"
    );
    let tags_are_jsonb: bool = one_row(&db, "SELECT tags::jsonb->>0 = 'ab' FROM web.sign_up")
        .await
        .get(0);
    assert!(tags_are_jsonb, "JSON text columns cast to jsonb");
    let user: (String, String) = {
        let r = one_row(&db, "SELECT id, name FROM web.users").await;
        (r.get(0), r.get(1))
    };
    assert_eq!(user, ("u2".into(), "Ada".into()));
    let name: String = one_row(&db, "SELECT name FROM web.identifies").await.get(0);
    assert_eq!(name, "Ada");
    // A later batch loads too: nothing is stuck behind the first.
    let later = json!({"batch": [
        {"type": "track", "event": "Plain", "userId": "u4", "messageId": "n-4",
         "properties": {"note": "\u{0}"}}
    ]});
    assert_eq!(app.post_json("/v1/batch", &later).await.0, StatusCode::OK);
    wait_rows(&db, "web.plain", 2).await;
    app.wait_drained().await;
    assert_eq!(count(&db, "web.tracks").await, 3);
    app.stop().await;
}

/// Tables the test creates first with constraints, so that Postgres refuses some rows.
const FAULTS: &str = "CREATE SCHEMA web; \
    CREATE TABLE web.checked (id varchar(1024) PRIMARY KEY, n bigint CHECK (n >= 0)); \
    CREATE TABLE web.refused (id varchar(1024) PRIMARY KEY, n bigint CHECK (n < 0));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgres_refuses_are_discarded_and_the_rest_loads() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    db.batch_execute(FAULTS).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let long_user = "x".repeat(1100);
    let mut events: Vec<Value> = (0..300)
        .map(|i| json!({"type": "track", "event": "Checked", "userId": "u", "messageId": format!("c-{i:03}"),
                        "properties": {"n": if i == 137 { -1 } else { i }}}))
        .collect();
    events.extend((0..40).map(|i| {
        json!({"type": "track", "event": "Refused", "userId": "u",
        "messageId": format!("r-{i:02}"), "properties": {"n": i}})
    }));
    events.extend((0..20).map(|i| {
        json!({"type": "identify", "userId": format!("user-{i}"),
        "messageId": format!("i-{i:02}"), "traits": {"plan": "pro"}})
    }));
    events.push(json!({"type": "identify", "userId": long_user, "messageId": "i-long", "traits": {"plan": "max"}}));
    events.push(json!({"type": "track", "event": "Dated", "userId": "u", "messageId": "d-1",
        "properties": {"at": "0000-01-01T00:00:00Z", "zone": "2026-01-01T00:00:00+20:00", "ok": "2026-01-01T00:00:00+15:00"}}));
    let (status, _) = app
        .post_json("/v1/batch", &json!({ "batch": events }))
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_rows(&db, "web.tracks", 341).await;
    wait_rows(&db, "web.identifies", 21).await;
    assert_eq!(count(&db, "web.checked").await, 299);
    assert_eq!(count(&db, "web.refused").await, 0, "every row refused");
    assert_eq!(count(&db, "web.users").await, 20);
    let all = wait_discards(&db, 1 + 40 + 1 + 2).await;
    let find = |table: &str, id: &str| {
        all.iter()
            .find(|d| d.0 == table && d.2.starts_with(id))
            .cloned()
            .unwrap_or_else(|| panic!("no discard for {table} {id}: {all:?}"))
    };
    let checked = find("checked", "c-137");
    assert_eq!(checked.1, "*", "the whole row");
    assert!(checked.4.contains("SQLSTATE 23514"), "{checked:?}");
    let row: Value = serde_json::from_str(&checked.3).expect("the row as JSON");
    assert_eq!(
        (row["id"].as_str(), row["n"].as_str()),
        (Some("c-137"), Some("-1"))
    );
    assert_eq!(all.iter().filter(|d| d.0 == "refused").count(), 40);
    let user = find("users", "xxxx");
    assert!(user.4.contains("SQLSTATE 22001"), "{user:?}");
    let at = find("dated", "d-1");
    assert_eq!(
        (at.1.as_str(), at.3.as_str()),
        ("at", "0000-01-01T00:00:00Z")
    );
    assert!(
        all.iter().any(|d| d.0 == "dated" && d.1 == "zone"),
        "{all:?}"
    );
    let ok: bool = one_row(
        &db,
        "SELECT at IS NULL AND zone IS NULL AND ok IS NOT NULL FROM web.dated",
    )
    .await
    .get(0);
    assert!(ok, "values Postgres cannot hold are NULL, the row loads");
    // The rows behind keep loading.
    let later = json!({"batch": [{"type": "track", "event": "Checked", "userId": "u",
        "messageId": "c-300", "properties": {"n": 300}}]});
    assert_eq!(app.post_json("/v1/batch", &later).await.0, StatusCode::OK);
    wait_rows(&db, "web.checked", 300).await;
    let (_, metrics) = app.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains(
            r#"switchyard_warehouse_discards_total{destination="warehouse",reason="sqlstate_23514"} 41"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_more_properties_than_a_table_can_have_columns() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let props: serde_json::Map<String, Value> = (0..1700)
        .map(|i| (format!("p{i:04}"), json!("v")))
        .collect();
    let wide = json!({"type": "track", "event": "Wide", "userId": "u", "messageId": "w-1", "properties": props});
    assert_eq!(app.post_json("/v1/track", &wide).await.0, StatusCode::OK);
    wait_rows(&db, "web.wide", 1).await;
    let columns_of = |table: &'static str| {
        let db = &db;
        async move {
            let sql = format!(
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_schema = 'web' AND table_name = '{table}'"
            );
            one_row(db, &sql).await.get::<_, i64>(0) as usize
        }
    };
    let (cols, standard) = (columns_of("wide").await, columns_of("tracks").await);
    assert!((1500..=1600).contains(&cols), "{cols} columns");
    let refused = wait_discards(&db, 100).await;
    assert!(
        refused
            .iter()
            .all(|d| d.0 == "wide" && d.2 == "w-1" && d.3 == "v" && d.4.contains("54011")),
        "{:?}",
        refused.first()
    );
    assert_eq!(
        cols + refused.len(),
        standard + 1700,
        "every property is a column or a discard"
    );
    let later = json!({"type": "track", "event": "Wide", "userId": "u", "messageId": "w-2", "properties": {"p0000": "w", "p1699": "z"}});
    assert_eq!(app.post_json("/v1/track", &later).await.0, StatusCode::OK);
    wait_rows(&db, "web.wide", 2).await;
    app.stop().await;
}

/// Records written straight to the log (as an old version's ingest could have), which the
/// reader cannot parse.
fn unreadable_log(dir: &std::path::Path) {
    use switchyard::log::record::Kind;
    let deep = format!(
        r#"{{"type":"track","x":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    crate::old_log::write(
        dir,
        &[
            (
                Kind::Accepted,
                "bad-number",
                r#"{"type":"track","event":"E","userId":"u","messageId":"bad-number","properties":{"n":1e400}}"#,
            ),
            (
                Kind::Accepted,
                "bad-surrogate",
                r#"{"type":"track","event":"E","userId":"u","messageId":"bad-surrogate","properties":{"s":"\ud800"}}"#,
            ),
            (Kind::Accepted, "bad-depth", &deep),
            (Kind::Object, "", r#"{"collection":"rooms","id":"#),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_log_records_become_discard_rows() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || unreadable_log(&path))
        .await
        .unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let good = json!({"type": "track", "event": "E", "userId": "u", "messageId": "good-1"});
    assert_eq!(app.post_json("/v1/track", &good).await.0, StatusCode::OK);
    wait_rows(&db, "web.e", 1).await;
    let all = wait_discards(&db, 4).await;
    let ids: Vec<&str> = all.iter().map(|d| d.2.as_str()).collect();
    assert_eq!(
        ids,
        ["bad-depth", "bad-number", "bad-surrogate", "seq:3"],
        "{all:?}"
    );
    for d in &all {
        assert_eq!((d.0.as_str(), d.1.as_str()), ("*", "*"), "{d:?}");
        assert!(d.4.contains("could not be read"), "{d:?}");
        assert!(d.3.len() <= 4200, "the value is cut: {}", d.3.len());
    }
    assert!(all[1].4.contains("number out of range"), "{:?}", all[1]);
    assert!(all[1].3.contains("1e400"), "the raw bytes: {:?}", all[1]);
    assert!(
        all[3].4.starts_with("the object could not be read"),
        "{:?}",
        all[3]
    );
    app.wait_drained().await;
    app.stop().await;
}
