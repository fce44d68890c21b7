//! The `postgres` destination against the real Postgres (`SWITCHYARD_POSTGRES_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres). Each test gets a database of its own.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use tokio_postgres::{Client, NoTls};

use crate::harness::*;

fn admin_url() -> String {
    std::env::var("SWITCHYARD_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn connect(url: &str) -> Option<Client> {
    match tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(url, NoTls)).await {
        Ok(Ok((client, conn))) => {
            tokio::spawn(conn);
            Some(client)
        }
        _ => None,
    }
}

/// A database of one test's own, dropped when the test ends (also on failure).
pub struct TestDb {
    name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (admin_url(), self.name.clone());
        // A plain thread: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = connect(&url).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A fresh database; `None` (loudly) when Postgres is not reachable.
pub async fn fresh_db() -> Option<(String, Client, TestDb)> {
    let admin_url = admin_url();
    let Some(admin) = connect(&admin_url).await else {
        assert!(
            !require_services(),
            "Postgres is not reachable at {admin_url} and SWITCHYARD_REQUIRE_SERVICES=1"
        );
        eprintln!("SKIPPED: Postgres is not reachable at {admin_url}");
        return None;
    };
    let name = format!("sytest_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let client = connect(&url).await.expect("connect to the test database");
    Some((url, client, TestDb { name }))
}

fn yaml(dir: &std::path::Path, url: &str, dests: &[&str]) -> String {
    let mut y = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n",
        dir.display()
    );
    for d in dests {
        y.push_str(&format!(
            "  - {{ id: {d}, type: postgres, start: earliest, settings: {{ url: \"{url}\", batch_rows: 500, batch_interval: 100ms }} }}\n"
        ));
    }
    y
}

async fn count(db: &Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Waits until `table` holds `n` rows.
async fn wait_rows(db: &Client, table: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = count(db, table).await;
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} has {got} rows, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn columns(db: &Client, table: &str) -> Vec<(String, String)> {
    db.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'web' AND table_name = $1 ORDER BY column_name",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_in_segments_layout_with_types_and_evolution() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let batch = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "t-1",
         "properties": {"orderId": "o1", "total": 10.5, "items": 2, "gift": false,
                        "products": [{"sku": "a"}], "shipping": {"city": "Oslo"}, "user_id": "x",
                        "deliveredAt": "2026-11-20T10:00:00Z", "Referrer URL": "https://r"},
         "context": {"library": {"name": "analytics.js", "version": "2.11.1"}, "userAgent": "UA"}},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i-1",
         "traits": {"firstName": "Ada", "email": "ada@example.com", "plan": "free"}},
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "p-1", "properties": {"path": "/"}},
        {"type": "screen", "userId": "u1", "name": "Main", "messageId": "s-1"},
        {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "g-1", "traits": {"employees": 12}},
        {"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "al-1"}
    ]});
    assert_eq!(app.post_json("/v1/batch", &batch).await.0, StatusCode::OK);
    wait_rows(&db, "web.order_completed", 1).await;
    for (table, n) in [
        ("tracks", 1),
        ("identifies", 1),
        ("users", 1),
        ("pages", 1),
        ("screens", 1),
        ("groups", 1),
        ("aliases", 1),
    ] {
        assert_eq!(count(&db, &format!("web.{table}")).await, n, "{table}");
    }
    let cols = columns(&db, "order_completed").await;
    let want = [
        ("context_library_name", "text"),
        ("context_user_agent", "text"),
        ("delivered_at", "timestamp with time zone"),
        ("event", "text"),
        ("event_text", "text"),
        ("gift", "boolean"),
        ("id", "character varying"),
        ("items", "bigint"),
        ("order_id", "text"),
        ("products", "text"),
        ("received_at", "timestamp with time zone"),
        ("referrer_url", "text"),
        ("shipping_city", "text"),
        ("total", "numeric"),
        ("user_id", "text"),
        ("uuid_ts", "timestamp with time zone"),
    ];
    for (c, t) in want {
        assert!(
            cols.contains(&(c.to_owned(), t.to_owned())),
            "{c} {t} in {cols:?}"
        );
    }
    let r = db
        .query_one(
            "SELECT user_id, event, event_text, total::text, products, shipping_city, items FROM web.order_completed",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String, String, String, String, i64) = (
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
    );
    assert_eq!(
        got,
        (
            "u1".into(),
            "order_completed".into(),
            "Order Completed".into(),
            "10.5".into(),
            r#"[{"sku":"a"}]"#.into(),
            "Oslo".into(),
            2
        ),
        "user_id is the event's, not the colliding property"
    );
    let tracks = columns(&db, "tracks").await;
    assert!(
        !tracks.iter().any(|(c, _)| c == "order_id"),
        "tracks has only standard columns"
    );
    let users = columns(&db, "users").await;
    assert!(
        !users.iter().any(|(c, _)| c == "anonymous_id"),
        "users has no anonymous_id"
    );
    // Evolution: a new property adds a column; a type conflict goes to the discards.
    let more = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u2", "messageId": "t-2",
         "properties": {"total": "lots", "coupon": "SPRING"}},
        {"type": "identify", "userId": "u1", "messageId": "i-2", "traits": {"plan": "pro"}}
    ]});
    assert_eq!(app.post_json("/v1/batch", &more).await.0, StatusCode::OK);
    wait_rows(&db, "web.order_completed", 2).await;
    let r = db
        .query_one(
            "SELECT total IS NULL, coupon FROM web.order_completed WHERE id = 't-2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, bool>(0), r.get::<_, String>(1)),
        (true, "SPRING".to_owned())
    );
    let d = db
        .query_one(
            "SELECT table_name, column_name, row_id, value, reason FROM web._switchyard_discards",
            &[],
        )
        .await
        .unwrap();
    let d: (String, String, String, String, String) =
        (d.get(0), d.get(1), d.get(2), d.get(3), d.get(4));
    assert_eq!(
        (d.0.as_str(), d.1.as_str(), d.2.as_str(), d.3.as_str()),
        ("order_completed", "total", "t-2", "lots")
    );
    assert!(d.4.contains("numeric"), "{}", d.4);
    // users: the latest traits win, older ones stay.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = db
            .query_one(
                "SELECT plan, first_name, email FROM web.users WHERE id = 'u1'",
                &[],
            )
            .await
            .unwrap();
        let got: (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if got.0 == "pro" {
            assert_eq!(got, ("pro".into(), "Ada".into(), "ada@example.com".into()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "users.plan never became pro: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_loaders_and_redelivery_never_duplicate_rows() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two destinations load the same events into the same schema at the same time: their
    // DDL races (advisory lock) and every row arrives twice (ON CONFLICT DO NOTHING).
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["wh_a", "wh_b"])).await;
    let events: Vec<_> = (0..300)
        .map(|i| json!({"type": "track", "event": format!("Event {}", i % 5), "userId": format!("u{i}"),
                        "messageId": format!("r-{i}"), "properties": {"n": i, "tag": format!("t{i}")}}))
        .collect();
    assert_eq!(
        app.post_json("/v1/batch", &json!({ "batch": events }))
            .await
            .0,
        StatusCode::OK
    );
    wait_rows(&db, "web.tracks", 300).await;
    app.wait_drained().await;
    for i in 0..5 {
        assert_eq!(count(&db, &format!("web.event_{i}")).await, 60);
    }
    app.stop().await;
    // A third loader replaying everything from the start changes nothing.
    let app = TestApp::start_with(
        dir.path(),
        &yaml(dir.path(), &url, &["wh_a", "wh_b", "wh_c"]),
    )
    .await;
    app.wait_drained().await;
    assert_eq!(count(&db, "web.tracks").await, 300);
    assert_eq!(count(&db, "web.event_0").await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_path_into_the_warehouse() {
    use crate::sdk::{available, python, sdk_dir};
    if !available(
        "segment-analytics-python",
        std::process::Command::new(python()).args(["-c", "import segment.analytics"]),
    ) {
        return;
    }
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let out = tokio::process::Command::new(python())
        .arg(sdk_dir().join("send_python.py"))
        .args([&app.url, KEY, "1", "wh"])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_rows(&db, "web.aliases", 1).await;
    let r = db
        .query_one(
            "SELECT id, user_id, revenue::text, context_library_name, original_timestamp = '2024-01-01T00:00:00Z'::timestamptz \
             FROM web.order_completed",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String, String, bool) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(
        got,
        (
            "wh-track".into(),
            "wh-user".into(),
            "12.5".into(),
            "analytics-python".into(),
            true
        )
    );
    let email: String = db
        .query_one("SELECT email FROM web.users WHERE id = 'wh-user'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "py@example.com");
    let page: (String, String, String) = {
        let r = db
            .query_one("SELECT name, category, path FROM web.pages", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(page, ("Home".into(), "Docs".into(), "/".into()));
    let group: (String, String) = {
        let r = db
            .query_one("SELECT group_id, name FROM web.groups", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(group, ("g-1".into(), "Acme".into()));
    let alias: String = db
        .query_one("SELECT previous_id FROM web.aliases", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(alias, "wh-anon");
    app.stop().await;
}

/// A Postgres cluster of the test's own (initdb + pg_ctl), so it can be stopped.
struct Cluster {
    bin: std::path::PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn cmd(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        // initdb and postgres refuse to run as root: run them as the postgres user then.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    fn start() -> Option<Cluster> {
        let c = Cluster::init()?;
        c.ctl("start").then_some(c)
    }

    /// `made` (a cluster from `init` or `start`), or `None` after saying loudly that the test
    /// is skipped; with `SWITCHYARD_REQUIRE_SERVICES=1` a missing cluster fails the test.
    fn or_skip(made: Option<Cluster>) -> Option<Cluster> {
        if made.is_none() {
            assert!(
                !require_services(),
                "cannot make a Postgres cluster with initdb/pg_ctl"
            );
            eprintln!("SKIPPED: no initdb/pg_ctl to run a Postgres cluster of the test's own");
        }
        made
    }

    /// initdb only: the test may configure the cluster before it starts.
    fn init() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()?;
        let data = tempfile::tempdir().ok()?;
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(data.path())
            .output();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let c = Cluster { bin, data, port };
        let ok = c
            .cmd("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(c.data.path())
            .output()
            .ok()?
            .status
            .success();
        ok.then_some(c)
    }

    fn ctl(&self, action: &str) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.path().display()
        );
        self.cmd("pg_ctl")
            .args(["-D"])
            .arg(self.data.path())
            .args(["-w", "-m", "fast", "-l"])
            .arg(self.data.path().join("log"))
            .args(["-o", &opts, action])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.ctl("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_loses_nothing() {
    let Some(cluster) = Cluster::or_skip(Cluster::start()) else {
        return;
    };
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let db = connect(&url).await.expect("connect to the test cluster");
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    let send = |from: usize| {
        let events: Vec<_> = (from..from + 100)
            .map(|i| json!({"type": "track", "event": "Ping", "userId": "u", "messageId": format!("o-{i}")}))
            .collect();
        json!({ "batch": events })
    };
    assert_eq!(app.post_json("/v1/batch", &send(0)).await.0, StatusCode::OK);
    wait_rows(&db, "web.ping", 100).await;
    assert!(cluster.ctl("stop"), "stop the cluster");
    assert_eq!(
        app.post_json("/v1/batch", &send(100)).await.0,
        StatusCode::OK,
        "ingest does not depend on Postgres"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        let err = report["destinations"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if err.contains("retrying") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outage never showed: {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(cluster.ctl("start"), "restart the cluster");
    let db = connect(&url).await.expect("reconnect");
    wait_rows(&db, "web.ping", 200).await;
    wait_rows(&db, "web.tracks", 200).await;
    app.wait_drained().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_set_objects_are_upserted_into_their_collection() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rooms.js");
    std::fs::write(
        &f,
        "async function onRequest(request) { const b = request.json();\n  Segment.set({collection: 'Rooms', id: b.id, properties: b.props});\n  Segment.track({event: 'Room Updated', userId: 'u', properties: {room: b.id}}); }",
    )
    .unwrap();
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{d}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: hotel, type: webhook, public: true, function: \"{f}\" }}\ndestinations:\n  - {{ id: archive, type: file, start: earliest, settings: {{ path: \"{d}/events.jsonl\" }} }}\n  - {{ id: warehouse, type: postgres, start: earliest, settings: {{ url: \"{url}\", batch_interval: 100ms }} }}\n",
        d = dir.path().display(),
        f = f.display()
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    for body in [
        json!({"id": "r1", "props": {"floor": 3, "view": "sea"}}),
        json!({"id": "r1", "props": {"floor": 4}}),
        json!({"id": "r2", "props": {"floor": 1, "view": "park"}}),
    ] {
        let (status, resp) = app
            .post_with("/webhooks/hotel", &[], body.to_string().as_bytes())
            .await;
        assert_eq!(status, StatusCode::OK, "{resp}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let rooms: Vec<(String, i64, String)> = loop {
        let got = db
            .query("SELECT id, floor, view FROM hotel.rooms ORDER BY id", &[])
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if got.len() == 2 && got[0].1 == 4 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        rooms,
        vec![
            ("r1".into(), 4, "sea".into()),
            ("r2".into(), 1, "park".into())
        ],
        "one row per id; later values win and earlier ones stay"
    );
    wait_rows(&db, "hotel.room_updated", 3).await;
    app.wait_drained().await;
    let archived = app.delivered(3).await;
    assert_eq!(archived.len(), 3);
    assert!(
        archived.iter().all(|e| e["type"] == "track"),
        "objects reach only warehouses"
    );
    assert!(
        app.recent_of("hotel", "")
            .await
            .iter()
            .all(|e| e["status"] == "accepted")
    );
    app.stop().await;
}

mod faults;
mod read_errors;
mod standard;
mod tls;
mod types;
