//! Column types (`docs/divergences.md`, "Column types"): a property that is an integer in one
//! event and a decimal in another ends as `numeric` with every value stored, whether the two
//! meet in one batch or in different ones; only a value no widening can take (text or a
//! boolean into `numeric`) goes to `_switchyard_discards`.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio_postgres::Client;

use super::{columns, fresh_db, wait_rows, yaml};
use crate::harness::*;

fn measured(id: &str, props: Value) -> Value {
    json!({"type": "track", "event": "Measured", "userId": "u", "messageId": id, "properties": props})
}

/// The column's type in `web.measured`.
async fn type_of(db: &Client, col: &str) -> String {
    columns(db, "measured")
        .await
        .into_iter()
        .find(|(c, _)| c == col)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no column {col}"))
}

/// `col` as text for every row, ordered by id.
async fn values(db: &Client, col: &str) -> Vec<Option<String>> {
    let sql = format!("SELECT {col}::text FROM web.measured ORDER BY id");
    let rows = db.query(&sql, &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// `(column_name, row_id, value, reason)` of every discard, ordered.
async fn discards(db: &Client) -> Vec<(String, String, String, String)> {
    db.query(
        "SELECT column_name, row_id, coalesce(value, ''), reason FROM web._switchyard_discards \
         ORDER BY row_id, column_name",
        &[],
    )
    .await
    .map(|rows| {
        let row = |r: &tokio_postgres::Row| (r.get(0), r.get(1), r.get(2), r.get(3));
        rows.iter().map(row).collect()
    })
    .unwrap_or_default()
}

async fn send(app: &TestApp, events: Vec<Value>) {
    let (status, body) = app
        .post_json("/v1/batch", &json!({ "batch": events }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_meeting_decimals_become_numeric_in_one_batch_and_across_batches() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    // One batch: `n` is an integer, then a decimal; `t` is text, then a number.
    send(
        &app,
        vec![
            measured("m-1", json!({"n": 1, "m": 2, "t": "x"})),
            measured("m-2", json!({"n": 1.5, "t": 3})),
        ],
    )
    .await;
    wait_rows(&db, "web.measured", 2).await;
    assert_eq!(type_of(&db, "n").await, "numeric", "created numeric");
    assert_eq!(type_of(&db, "m").await, "bigint");
    assert_eq!(type_of(&db, "t").await, "text");
    assert_eq!(
        values(&db, "n").await,
        [Some("1".into()), Some("1.5".into())]
    );
    assert_eq!(values(&db, "t").await, [Some("x".into()), Some("3".into())]);
    // A later batch: `m`, a bigint column, meets a decimal and is widened.
    send(&app, vec![measured("m-3", json!({"m": 2.25}))]).await;
    wait_rows(&db, "web.measured", 3).await;
    assert_eq!(type_of(&db, "m").await, "numeric", "widened");
    let m = values(&db, "m").await;
    assert_eq!(m, [Some("2".into()), None, Some("2.25".into())]);
    assert!(discards(&db).await.is_empty(), "no value was discarded");
    // Text or a boolean cannot go into numeric: those values alone are discarded.
    send(
        &app,
        vec![measured("m-4", json!({"m": "lots", "n": true, "t": 4.5}))],
    )
    .await;
    wait_rows(&db, "web.measured", 4).await;
    app.wait_drained().await;
    let d = discards(&db).await;
    let got: Vec<(&str, &str, &str)> = d
        .iter()
        .map(|(c, id, v, _)| (c.as_str(), id.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, [("m", "m-4", "lots"), ("n", "m-4", "true")]);
    assert!(d[0].3.contains("numeric"), "{}", d[0].3);
    assert_eq!(type_of(&db, "m").await, "numeric", "never widened to text");
    assert_eq!(values(&db, "t").await[3], Some("4.5".into()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_postgres_will_not_widen_keeps_loading() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    send(&app, vec![measured("v-1", json!({"k": 1}))]).await;
    wait_rows(&db, "web.measured", 1).await;
    // A model's view on the column: Postgres refuses to change its type.
    db.batch_execute("CREATE VIEW web.k_model AS SELECT k FROM web.measured")
        .await
        .unwrap();
    send(
        &app,
        vec![
            measured("v-2", json!({"k": 2.5})),
            measured("v-3", json!({"k": 3})),
        ],
    )
    .await;
    wait_rows(&db, "web.measured", 3).await;
    send(&app, vec![measured("v-4", json!({"k": 4.5}))]).await;
    wait_rows(&db, "web.measured", 4).await;
    app.wait_drained().await;
    assert_eq!(type_of(&db, "k").await, "bigint");
    let k = values(&db, "k").await;
    assert_eq!(k, [Some("1".into()), None, Some("3".into()), None]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = discards(&db).await;
        if d.len() >= 2 || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let got: Vec<(&str, &str)> = d.iter().map(|x| (x.1.as_str(), x.2.as_str())).collect();
    assert_eq!(got, [("v-2", "2.5"), ("v-4", "4.5")]);
    assert!(d.iter().all(|x| x.3.contains("view")), "{d:?}");
    let (_, report) = app.get("/api/v1/inspect").await;
    assert!(
        report["destinations"][0]["last_error"].is_null(),
        "a refused widening is not a failure to retry: {report}"
    );
    app.stop().await;
}
