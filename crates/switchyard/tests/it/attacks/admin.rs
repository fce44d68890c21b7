//! Category 4: the admin API (`/api`, `/ui`, `/metrics`). With `admin_token`: no token, a
//! wrong one, one in the query string, odd schemes; without it on loopback: foreign `Host`
//! (DNS rebinding), foreign `Origin` and `Sec-Fetch-Site` (CSRF), on GET and POST routes.
//! And `serve` refusing a non-loopback listener without a token.

use hyper::{Method, StatusCode};

use super::raw;
use crate::harness::*;

const TOKEN: &str = "adm_attack_0123456789abcdef";

/// The live feed: answered requests stay open, so only refusals are tried on it.
const STREAM: &str = "/api/v1/stream";

/// Every admin route, as (method, path, body).
fn routes() -> Vec<(Method, &'static str, &'static str)> {
    vec![
        (Method::GET, "/api/v1/inspect", ""),
        (Method::GET, STREAM, ""),
        (Method::GET, "/api/v1/sources/web/function-logs", ""),
        (Method::GET, "/api/v1/sources/web/function-dead-letters", ""),
        (Method::POST, "/api/v1/sources/web/test-function", "{}"),
        (Method::GET, "/metrics", ""),
        (Method::HEAD, "/metrics", ""),
        (Method::GET, "/api/v1/openapi.json", ""),
        (Method::GET, "/api/v1/sources/web/events", ""),
        (Method::GET, "/api/v1/events/m-1?source=web", ""),
        (Method::GET, "/api/v1/profiles/u1", ""),
        (Method::GET, "/api/v1/destinations/archive/deliveries", ""),
        (
            Method::POST,
            "/api/v1/test-mapping",
            r#"{"subscribe":"type = \"track\"","event":{}}"#,
        ),
        (
            Method::POST,
            "/api/v1/destinations/archive/dead-letters/replay",
            "{}",
        ),
        (
            Method::POST,
            "/api/v1/destinations/archive/replay",
            r#"{"from_log":true}"#,
        ),
        (Method::GET, "/api/v1/nope", ""),
        (Method::GET, "/api/v2/inspect", ""),
        (Method::GET, "/ui", ""),
        (Method::GET, "/ui/events", ""),
    ]
}

/// (name, headers, query string) of a request that must be refused.
type Refused<'a> = (&'a str, Vec<(&'a str, String)>, String);
/// (name, Host, Origin, Sec-Fetch-Site, allowed).
type Loopback<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, bool);

fn is_json_error(body: &str, code: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["code"] == code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(dir.path(), &format!(", admin_token: {TOKEN}"));
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let good = format!("Bearer {TOKEN}");
    let basic_token = basic(TOKEN);
    let mut failures = Vec::new();
    let mut tried = 0;
    // Refused: each of these headers (or none) with a query string that holds the token.
    let refused: Vec<Refused> = vec![
        ("no token", vec![], String::new()),
        (
            "wrong token",
            vec![("authorization", "Bearer adm_attack_0123456789abcdeX".into())],
            String::new(),
        ),
        (
            "prefix of the token",
            vec![("authorization", format!("Bearer {}", &TOKEN[..20]))],
            String::new(),
        ),
        (
            "token extended",
            vec![("authorization", format!("Bearer {TOKEN}0"))],
            String::new(),
        ),
        (
            "empty bearer",
            vec![("authorization", "Bearer ".into())],
            String::new(),
        ),
        (
            "scheme only",
            vec![("authorization", "Bearer".into())],
            String::new(),
        ),
        (
            "no scheme",
            vec![("authorization", TOKEN.into())],
            String::new(),
        ),
        (
            "basic",
            vec![("authorization", basic_token.clone())],
            String::new(),
        ),
        (
            "token scheme",
            vec![("authorization", format!("Token {TOKEN}"))],
            String::new(),
        ),
        (
            "x-admin-token header",
            vec![("x-admin-token", TOKEN.into())],
            String::new(),
        ),
        (
            "cookie",
            vec![("cookie", format!("admin_token={TOKEN}"))],
            String::new(),
        ),
        ("?token=", vec![], format!("token={TOKEN}")),
        ("?admin_token=", vec![], format!("admin_token={TOKEN}")),
        ("?access_token=", vec![], format!("access_token={TOKEN}")),
        (
            "?authorization=",
            vec![],
            format!("authorization=Bearer%20{TOKEN}"),
        ),
    ];
    for (method, path, body) in routes() {
        for (name, headers, query) in &refused {
            tried += 1;
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if query.is_empty() {
                format!("{}{path}", app.url)
            } else {
                format!("{}{path}{sep}{query}", app.url)
            };
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, text) = raw(method.clone(), &url, &h, body.as_bytes().to_vec()).await;
            let json_ok = method == Method::HEAD || is_json_error(&text, "unauthorized");
            if status != StatusCode::UNAUTHORIZED || !json_ok {
                failures.push(format!("{method} {path} with {name}: {status} {text}"));
            }
        }
        // Accepted: the token in the header, in any case of the scheme, from any Host.
        if path == STREAM {
            continue;
        }
        for auth in [
            good.clone(),
            format!("bearer {TOKEN}"),
            format!("BEARER {TOKEN}"),
        ] {
            tried += 1;
            let h = [
                ("authorization", auth.as_str()),
                ("host", "evil.example"),
                ("content-type", "application/json"),
            ];
            let (status, text) = raw(
                method.clone(),
                &format!("{}{path}", app.url),
                &h,
                body.as_bytes().to_vec(),
            )
            .await;
            let unknown = path.contains("nope") || path.contains("v2") || path.starts_with("/ui");
            let ok = if unknown {
                status == StatusCode::NOT_FOUND
            } else {
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                    && !status.is_server_error()
            };
            if !ok {
                failures.push(format!("{method} {path} with {auth}: {status} {text}"));
            }
        }
    }
    // Ingest, webhooks and health stay open without the token.
    for path in ["/healthz", "/readyz"] {
        tried += 1;
        let (status, _) = raw(Method::GET, &format!("{}{path}", app.url), &[], vec![]).await;
        if status != StatusCode::OK {
            failures.push(format!("{path}: {status}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("admin token: {tried} attempts, all answered as expected");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_a_loopback_admin_api_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let own = app.url.trim_start_matches("http://").to_owned();
    let port = own.rsplit(':').next().unwrap().to_owned();
    let localhost = format!("localhost:{port}");
    let v6 = format!("[::1]:{port}");
    let origin_own = app.url.clone();
    // (name, Host, Origin, Sec-Fetch-Site, allowed)
    let evil_port = format!("evil.example:{port}");
    let rebinding = format!("localhost.evil.example:{port}");
    let nip = format!("127.0.0.1.nip.io:{port}");
    let at = format!("127.0.0.1:{port}@evil.example");
    let origin_localhost = format!("http://localhost:{port}");
    let origin_https = format!("https://{own}");
    let origin_slash = format!("{origin_own}/");
    let origin_other_port = "http://127.0.0.1:1".to_owned();
    let cases: Vec<Loopback> = vec![
        ("own address", &own, None, None, true),
        ("localhost", &localhost, None, None, true),
        ("[::1]", &v6, None, None, true),
        ("own origin", &own, Some(&origin_own), None, true),
        (
            "same-origin fetch",
            &own,
            Some(&origin_own),
            Some("same-origin"),
            true,
        ),
        ("typed in the address bar", &own, None, Some("none"), true),
        ("Host evil.example", "evil.example", None, None, false),
        ("Host evil.example:port", &evil_port, None, None, false),
        ("Host localhost.evil.example", &rebinding, None, None, false),
        ("Host 127.0.0.1.nip.io", &nip, None, None, false),
        ("Host with user-info", &at, None, None, false),
        ("Host 2130706433", "2130706433", None, None, false),
        ("Host empty", "", None, None, false),
        (
            "Origin evil.example",
            &own,
            Some("http://evil.example"),
            None,
            false,
        ),
        ("Origin null", &own, Some("null"), None, false),
        (
            "Origin https of own host",
            &own,
            Some(&origin_https),
            None,
            false,
        ),
        (
            "Origin localhost for Host 127.0.0.1",
            &own,
            Some(&origin_localhost),
            None,
            false,
        ),
        (
            "Origin with a trailing slash",
            &own,
            Some(&origin_slash),
            None,
            false,
        ),
        (
            "Origin of another port",
            &own,
            Some(&origin_other_port),
            None,
            false,
        ),
        (
            "Sec-Fetch-Site cross-site (no Origin)",
            &own,
            None,
            Some("cross-site"),
            false,
        ),
        (
            "Sec-Fetch-Site same-site (no Origin)",
            &own,
            None,
            Some("same-site"),
            false,
        ),
    ];
    let mut failures = Vec::new();
    let mut tried = 0;
    for (method, path, body) in routes() {
        for (name, host, origin, site, allowed) in &cases {
            if *allowed && path == STREAM {
                continue;
            }
            tried += 1;
            let mut h = vec![("host", *host)];
            if let Some(o) = origin {
                h.push(("origin", o));
            }
            if let Some(s) = site {
                h.push(("sec-fetch-site", s));
            }
            let (status, text) = raw(
                method.clone(),
                &format!("{}{path}", app.url),
                &h,
                body.as_bytes().to_vec(),
            )
            .await;
            let refused = status == StatusCode::FORBIDDEN
                && (method == Method::HEAD
                    || is_json_error(&text, "forbidden_host")
                    || is_json_error(&text, "forbidden_origin"));
            let ok = if *allowed {
                status != StatusCode::FORBIDDEN && !status.is_server_error()
            } else {
                refused
            };
            if !ok {
                failures.push(format!("{method} {path} with {name}: {status} {text}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("loopback admin: {tried} attempts, all answered as expected");
    app.stop().await;
}

/// `serve` refuses a listener that is not loopback without a (long enough) token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_public_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    for (listen, token, starts) in [
        ("0.0.0.0:0", None, false),
        ("\"[::]:0\"", None, false),
        ("0.0.0.0:0", Some("short"), false),
    ] {
        let extra = token.map_or(String::new(), |t| format!(", admin_token: {t}"));
        let yaml = config_yaml(dir.path(), &extra).replace("127.0.0.1:0", listen);
        let cfg = dir.path().join("public.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["serve", "--config"])
                .arg(&cfg)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("serve exits instead of serving")
        .unwrap();
        assert_eq!(out.status.success(), starts, "{listen} {token:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("admin_token"), "{listen}: {text}");
    }
    // And from the command line.
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, config_yaml(dir.path(), "")).unwrap();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--listen", "0.0.0.0:0", "--config"])
            .arg(&cfg)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve --listen 0.0.0.0 exits")
    .unwrap();
    assert!(!out.status.success());
}
