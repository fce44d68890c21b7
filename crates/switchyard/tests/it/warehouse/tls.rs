//! TLS to Postgres (`sslmode` in the URL, `settings.ca_file`), against a cluster of the
//! test's own that accepts only TLS (`hostssl` in pg_hba.conf), with a CA and a server
//! certificate for `localhost` the test makes. Each destination loads into a database of its
//! own; the ones that cannot connect say why and lose nothing: fixed, they load every event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls};

use super::Cluster;
use crate::harness::*;

/// A CA; a server certificate for `localhost` it signed, installed in the cluster.
fn install_certificates(cluster: &Cluster, certs: &Path) -> PathBuf {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let data = cluster.data.path();
    std::fs::write(data.join("server.crt"), server.pem()).unwrap();
    std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
    let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(data.join("postgresql.conf"), conf).unwrap();
    let hba =
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n";
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    for f in ["server.crt", "server.key", "postgresql.conf", "pg_hba.conf"] {
        let _ = std::process::Command::new("chown")
            .args(["postgres"])
            .arg(data.join(f))
            .output();
    }
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(data.join("server.key"), private).unwrap();
    let ca_file = certs.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    ca_file
}

/// Over the cluster's Unix socket, which needs no TLS.
async fn socket(cluster: &Cluster, db: &str) -> Client {
    let conn = format!(
        "host={} port={} user=postgres dbname={db}",
        cluster.data.path().display(),
        cluster.port
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn tracks(cluster: &Cluster, db: &str) -> i64 {
    let client = socket(cluster, db).await;
    let row = client
        .query_one("SELECT count(*) FROM web.tracks", &[])
        .await;
    row.map_or(0, |r| r.get(0))
}

/// Destination `id`: database `id`, host and query as given, and the CA file if any.
fn dest(id: &str, port: u16, host: &str, query: &str, ca: Option<&Path>) -> String {
    let ca = ca.map_or(String::new(), |p| format!(", ca_file: \"{}\"", p.display()));
    format!(
        "  - {{ id: {id}, type: postgres, start: earliest, settings: {{ url: \"postgres://postgres@{host}:{port}/{id}{query}\", batch_interval: 100ms{ca} }} }}\n"
    )
}

fn config(dir: &Path, dests: &[String]) -> String {
    let mut y = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n",
        dir.display()
    );
    dests.iter().for_each(|d| y.push_str(d));
    y
}

/// Waits until destination `id` reports an error, and returns it.
async fn error_of(app: &TestApp, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        let all = report["destinations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let d = all
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(e) = d["last_error"].as_str() {
            return e.to_owned();
        }
        assert!(Instant::now() < deadline, "{id} reports no error: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The destinations that cannot connect say why in `inspect`.
async fn assert_clear_errors(app: &TestApp) {
    let no_ca = error_of(app, "no_ca").await;
    assert!(
        no_ca.contains("sslmode=verify-full, the system's CAs"),
        "{no_ca}"
    );
    assert!(
        no_ca.contains("invalid peer certificate: UnknownIssuer"),
        "{no_ca}"
    );
    let host = error_of(app, "wrong_host").await;
    assert!(host.contains("not valid for name \"127.0.0.1\""), "{host}");
    let plain = error_of(app, "plain").await;
    assert!(
        plain.contains("no pg_hba.conf entry") && plain.contains("no encryption"),
        "{plain}"
    );
}

async fn wait_tracks(cluster: &Cluster, db: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tracks(cluster, db).await != n {
        assert!(
            Instant::now() < deadline,
            "{db}: web.tracks never had {n} rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_as_sslmode_says() {
    let Some(cluster) = Cluster::or_skip(Cluster::init()) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = install_certificates(&cluster, certs.path());
    assert!(cluster.ctl("start"), "start the TLS-only cluster");
    let (good, bad) = (
        ["verify_full", "verify_ca", "require", "prefer"],
        ["no_ca", "wrong_host", "plain"],
    );
    let admin = socket(&cluster, "postgres").await;
    for db in good.iter().chain(&bad) {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    }
    let p = cluster.port;
    let fixed = [
        dest("no_ca", p, "localhost", "?sslmode=verify-full", Some(&ca)),
        dest(
            "wrong_host",
            p,
            "localhost",
            "?sslmode=verify-full",
            Some(&ca),
        ),
        dest("plain", p, "127.0.0.1", "?sslmode=require", None),
    ];
    let mut dests = vec![
        dest(
            "verify_full",
            p,
            "localhost",
            "?sslmode=verify-full",
            Some(&ca),
        ),
        dest("verify_ca", p, "127.0.0.1", "?sslmode=verify-ca", Some(&ca)),
        dest("require", p, "127.0.0.1", "?sslmode=require", None),
        dest("prefer", p, "127.0.0.1", "", None),
    ];
    dests.extend([
        dest("no_ca", p, "localhost", "?sslmode=verify-full", None),
        dest(
            "wrong_host",
            p,
            "127.0.0.1",
            "?sslmode=verify-full",
            Some(&ca),
        ),
        dest("plain", p, "127.0.0.1", "?sslmode=disable", None),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &config(dir.path(), &dests)).await;
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"type": "track", "event": "Ping", "userId": "u", "messageId": format!("tls-{i}")}))
        .collect();
    let (status, _) = app
        .post_json("/v1/batch", &json!({ "batch": events }))
        .await;
    assert_eq!(status, StatusCode::OK);
    for db in good {
        wait_tracks(&cluster, db, 3).await;
    }
    assert_clear_errors(&app).await;
    for db in bad {
        assert_eq!(tracks(&cluster, db).await, 0, "{db} loaded nothing");
        let (_, dl) = app
            .get(&format!("/api/v1/destinations/{db}/dead-letters"))
            .await;
        assert_eq!(dl["dead_letters"], json!([]), "{db}: nothing dead-lettered");
    }
    app.stop().await;
    // Fixed, each loads every event once.
    dests.truncate(4);
    dests.extend(fixed);
    let app = TestApp::start_with(dir.path(), &config(dir.path(), &dests)).await;
    for db in bad {
        wait_tracks(&cluster, db, 3).await;
    }
    app.wait_drained().await;
    for db in good.iter().chain(&bad) {
        assert_eq!(tracks(&cluster, db).await, 3, "{db}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plain_and_require_does_not() {
    let Some(cluster) = Cluster::or_skip(Cluster::start()) else {
        return;
    };
    // initdb's default: no TLS at all.
    let admin = socket(&cluster, "postgres").await;
    for db in ["plain_prefer", "plain_require"] {
        let sql = format!("CREATE DATABASE {db}");
        admin.batch_execute(&sql).await.unwrap();
    }
    let p = cluster.port;
    let dests = [
        dest("plain_prefer", p, "127.0.0.1", "?sslmode=prefer", None),
        dest("plain_require", p, "127.0.0.1", "?sslmode=require", None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &config(dir.path(), &dests)).await;
    let event = json!({"type": "track", "event": "Ping", "userId": "u", "messageId": "plain-1"});
    assert_eq!(app.post_json("/v1/track", &event).await.0, StatusCode::OK);
    wait_tracks(&cluster, "plain_prefer", 1).await;
    let err = error_of(&app, "plain_require").await;
    assert!(
        err.contains("sslmode=require") && err.contains("server does not support TLS"),
        "{err}"
    );
    assert_eq!(tracks(&cluster, "plain_require").await, 0);
    app.stop().await;
}
