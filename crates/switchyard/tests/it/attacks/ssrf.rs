//! Category 2: the SSRF guard, through a webhook destination and through `fetch` in a
//! function (`POST /api/v1/sources/{id}/test-function`): every spelling of a loopback
//! address, aimed at a live trap listener that must see nothing; a redirect from an allowed
//! receiver to the trap (never followed); and proxy environment variables pointing at a
//! trap, set for the real binary (never used). Only loopback is ever aimed at.

use std::path::Path;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{Trap, poll_json, serve, stop};
use crate::harness::*;
use crate::receiver::Receiver;

/// URLs that reach the IPv4 trap (`v4`) or the IPv6 one (`v6`) if the guard let them.
fn spellings(v4: u16, v6: u16) -> Vec<String> {
    let hosts4 = [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "127.000.000.001",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "0x7f.0.0.1",
        "0x7f.1",
        "0177.0.0.1",
        "0177.1",
        "017700000001",
        "127.8.9.10",
        "0.0.0.0",
        "0",
        "localhost",
        "LOCALHOST",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::ffff:0:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[2002:7f00:1::]",
    ];
    let hosts6 = ["[::1]", "[0:0:0:0:0:0:0:1]", "[0000::0001]", "[::]"];
    let mut urls: Vec<String> = hosts4
        .iter()
        .map(|h| format!("http://{h}:{v4}/ssrf"))
        .collect();
    urls.extend(hosts6.iter().map(|h| format!("http://{h}:{v6}/ssrf")));
    urls.push(format!("https://127.0.0.1:{v4}/tls"));
    urls.push(format!("http://user:pw@127.0.0.1:{v4}/userinfo"));
    urls
}

/// Destinations `hook0`, `hook1`, ... with five mappings each (the most one takes), one per
/// URL.
fn yaml(dir: &Path, urls: &[String], extra_server: &str) -> String {
    let destinations: String = urls
        .chunks(5)
        .enumerate()
        .map(|(d, chunk)| {
            let mappings: String = chunk
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    format!("      - {{ name: m{i}, subscribe: 'type = \"track\"', url: \"{u}\" }}\n")
                })
                .collect();
            format!(
                "  - id: hook{d}\n    type: webhook\n    start: earliest\n    retry: {{ initial_backoff: 20ms, max_backoff: 100ms, max_age: 3s }}\n    mappings:\n{mappings}"
            )
        })
        .collect();
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB {extra_server} }}
functions: {{ deadline: 10s, workers: 1 }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
  - {{ id: fetcher, type: webhook, public: true, function: "{dir}/fetcher.js" }}
destinations:
{destinations}"#,
        dir = dir.display()
    )
}

/// Every entry of `list` (`dead-letters` or `deliveries`) across the destinations of
/// `yaml`, once there are at least `n`.
async fn across(url: &str, urls: usize, list: &str, key: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = Vec::new();
        for d in 0..urls.div_ceil(5) {
            let (_, v) = get(&format!(
                "{url}/api/v1/destinations/hook{d}/{list}?limit=1000"
            ))
            .await;
            all.extend(v[key].as_array().cloned().unwrap_or_default());
        }
        if all.len() >= n {
            return all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} {list}: {all:?}",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(url: &str) -> (hyper::StatusCode, Value) {
    let r = switchyard::cli::client::call(hyper::Method::GET, url, None, None)
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// Fetches every URL in the body's `urls`, one at a time, and logs one line each.
const FETCHER: &str = r#"async function onRequest(request) {
  for (const url of request.json().urls) {
    try {
      const r = await fetch(url, { method: 'POST', body: 'x' });
      console.log(JSON.stringify({ url, status: r.status, location: r.headers.get('location'), redirected: r.redirected }));
    } catch (e) {
      console.log(JSON.stringify({ url, error: String(e) }));
    }
  }
}
"#;

async fn fetch_all(app_url: &str, urls: &[String], auth: Option<&str>) -> Vec<Value> {
    let saved = json!({"body": {"urls": urls}});
    let mut headers = vec![];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let r = switchyard::cli::client::call_with_headers(
        hyper::Method::POST,
        &format!("{app_url}/api/v1/sources/fetcher/test-function"),
        &headers,
        Some(saved.to_string().into_bytes()),
    )
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(report["error"], Value::Null, "{report}");
    report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l["message"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_through_every_spelling_of_loopback() {
    let (t4, t6) = (Trap::start(false).await, Trap::start(true).await);
    let urls = spellings(t4.port, t6.port);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fetcher.js"), FETCHER).unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &urls, "")).await;
    let mut failures = Vec::new();

    // fetch: each one rejects with the guard's reason.
    for line in fetch_all(&app.url, &urls, None).await {
        let err = line["error"].as_str().unwrap_or("");
        if !err.contains("refused") {
            failures.push(format!("fetch {}: {line}", line["url"]));
        }
    }
    // The webhook destination: each mapping is dead-lettered with the reason.
    let ev = json!({"type": "track", "event": "Ping", "userId": "u", "messageId": "ssrf-1"});
    app.post_json("/v1/track", &ev).await;
    let dead = across(
        &app.url,
        urls.len(),
        "dead-letters",
        "dead_letters",
        urls.len(),
    )
    .await;
    for d in &dead {
        let reason = d["reason"].as_str().unwrap_or("");
        if !reason.contains("refused") {
            failures.push(format!("delivery to {}: {reason}", d["request"]["url"]));
        }
    }
    if t4.hits() + t6.hits() > 0 {
        failures.push(format!(
            "the traps were reached: {} (IPv4), {} (IPv6)",
            t4.hits(),
            t6.hits()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} spellings got through:\n{}",
        failures.len(),
        2 * urls.len(),
        failures.join("\n")
    );
    eprintln!(
        "ssrf: {} spellings x (fetch, webhook), all refused",
        urls.len()
    );
    app.stop().await;
}

/// A receiver the config allows, answering every request with `status` and a `Location` to
/// `to`.
async fn redirector(status: u16, to: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        async move {
            let mut h = HeaderMap::new();
            h.insert("location", to.parse().unwrap());
            (StatusCode::from_u16(status).unwrap(), h, "moved")
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_through_redirects_from_an_allowed_receiver() {
    let trap = Trap::start(false).await;
    let target = format!("http://127.0.0.1:{}/private", trap.port);
    let mut ports = Vec::new();
    for status in [301u16, 302, 303, 307, 308] {
        ports.push((status, redirector(status, target.clone()).await));
    }
    let allow: Vec<String> = ports
        .iter()
        .map(|(_, p)| format!("\"127.0.0.1:{p}\""))
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|(s, p)| format!("http://127.0.0.1:{p}/{s}"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fetcher.js"), FETCHER).unwrap();
    let extra = format!(", egress_allow: [{}]", allow.join(", "));
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &urls, &extra)).await;
    let mut failures = Vec::new();
    for line in fetch_all(&app.url, &urls, None).await {
        let status = line["status"].as_u64().unwrap_or(0);
        if !(300..400).contains(&status) || line["redirected"] != json!(false) {
            failures.push(format!("fetch: {line}"));
        }
    }
    let ev = json!({"type": "track", "event": "Ping", "userId": "u", "messageId": "redirect-1"});
    app.post_json("/v1/track", &ev).await;
    let deliveries = across(&app.url, urls.len(), "deliveries", "deliveries", urls.len()).await;
    for d in &deliveries {
        if !d["status"]
            .as_u64()
            .is_some_and(|s| (300..400).contains(&s))
        {
            failures.push(format!("delivery: {d}"));
        }
    }
    // Give a follow-up request time to arrive if one were made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if trap.hits() > 0 {
        failures.push(format!("a redirect was followed: {} hits", trap.hits()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

/// The real binary with every proxy variable pointing at a trap: deliveries and fetches to
/// an allowed receiver go straight to it, refused ones go nowhere, and the proxy sees
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_environment_variables_are_ignored() {
    let proxy = Trap::start(false).await;
    let refused = Trap::start(false).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fetcher.js"), FETCHER).unwrap();
    let urls = vec![
        format!("{}/allowed", rx.url),
        format!("http://127.0.0.1:{}/refused", refused.port),
    ];
    let cfg = dir.path().join("c.yaml");
    let extra = format!(", egress_allow: [\"127.0.0.1:{}\"]", rx.port);
    std::fs::write(&cfg, yaml(dir.path(), &urls, &extra)).unwrap();
    let p = format!("http://127.0.0.1:{}", proxy.port);
    let env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, p.as_str()))
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();
    let (child, url, log) = serve(&cfg, &env, "warn").await;
    let fetched = fetch_all(&url, &urls, None).await;
    let ev = json!({"type": "track", "event": "Ping", "userId": "u", "messageId": "proxy-1"});
    let r = switchyard::cli::client::call(
        hyper::Method::POST,
        &format!("{url}/v1/track"),
        Some(&basic(KEY)),
        Some(ev.to_string().into_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, hyper::StatusCode::OK);
    rx.wait_for("the delivery and the fetch", |g| {
        g.iter().filter(|r| r.path == "/allowed").count() >= 2
    })
    .await;
    poll_json(
        &format!("{url}/api/v1/destinations/hook0/dead-letters"),
        None,
        "the refused mapping dead-lettered",
        |v| v["dead_letters"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    stop(child);
    let _ = log.join();
    assert_eq!(fetched[0]["status"], 200, "{fetched:?}");
    assert!(
        fetched[1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{fetched:?}"
    );
    assert_eq!(proxy.hits(), 0, "the proxy was used");
    assert_eq!(refused.hits(), 0, "a refused address was reached");
}

/// Names and addresses that are never connected to in a test (`localhost.` and `127.0.0.1.`
/// would go to the DNS resolver here): `check` judges them from the URL alone, and every
/// private range is in `src/egress/tests.rs` by address. At connect time the guard judges
/// whatever address a name resolves to.
#[test]
fn check_warns_about_every_private_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = [
        "localhost.",
        "127.0.0.1.",
        "api.localhost",
        "x.y.localhost.",
        "169.254.169.254",
        "0xa9fea9fe",
        "2852039166",
        "169.254.43518",
        "[fd00:ec2::254]",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",
        "10.1",
        "0x0a000001",
        "012.0.0.1",
        "192.168.1.1",
        "0xc0a80101",
        "172.16.0.1",
        "100.64.0.1",
        "[fc00::1]",
        "[fe80::1]",
        "[::ffff:10.0.0.1]",
        "[2002:a00:1::]",
    ];
    let urls: Vec<String> = hosts.iter().map(|h| format!("http://{h}/x")).collect();
    std::fs::write(dir.path().join("fetcher.js"), FETCHER).unwrap();
    let (_, problems) =
        switchyard::config::compile_str(&yaml(dir.path(), &urls, ""), "t", &|_| None);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let missing: Vec<&&str> = hosts
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let path = format!(
                "destinations[hook{}].mappings[{}].url deliveries will fail",
                i / 5,
                i % 5
            );
            !shown
                .iter()
                .any(|s| s.contains(&path) && s.contains("refused"))
        })
        .map(|(_, h)| h)
        .collect();
    assert!(missing.is_empty(), "no warning for {missing:?}: {shown:?}");
}
