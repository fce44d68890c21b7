//! Category 1: forged, replayed and stale requests on every webhook verification scheme
//! (`segment`, `standard_webhooks` with `webhook-*` and `svix-*` headers, `hmac_sha256` hex
//! and base64 with a prefix) and on the source token (path, `?token=`, `Bearer`). Every
//! source runs a function, so "nothing runs" is observable in its function log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const SEG: &str = "seg_secret_0123456789";
const SW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const HEX: &str = "hex_secret_0123456789";
const B64: &str = "b64_secret_0123456789";
const TOKEN: &str = "tok_0123456789abcdef";

const RUN: &str = "async function onRequest(request) {\n  const b = request.json();\n  Segment.track({event: 'Signed', userId: 'u', messageId: b.messageId});\n}\n";

fn yaml(dir: &std::path::Path) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
functions: {{ workers: 1 }}
sources:
  - {{ id: seg, type: webhook, function: "{dir}/run.js", verify: {{ scheme: segment, secret: {SEG} }} }}
  - {{ id: sw, type: webhook, function: "{dir}/run.js", verify: {{ scheme: standard_webhooks, secret: "{SW}" }} }}
  - {{ id: hex, type: webhook, function: "{dir}/run.js", verify: {{ scheme: hmac_sha256, secret: {HEX}, header: X-Sig-Hex }} }}
  - {{ id: b64, type: webhook, function: "{dir}/run.js", verify: {{ scheme: hmac_sha256, secret: {B64}, header: X-Sig-B64, encoding: base64, prefix: "sha256=" }} }}
  - {{ id: tok, type: webhook, function: "{dir}/run.js", token: {TOKEN} }}
"#,
        dir = dir.display()
    )
}

fn sha1_hex(key: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    parts.iter().for_each(|p| mac.update(p));
    mac.finalize().into_bytes().to_vec()
}

fn sw_sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD.decode(&secret[6..]).unwrap();
    let ts = ts.to_string();
    let mac = sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

fn body(mid: &str) -> Vec<u8> {
    json!({"messageId": mid, "n": 1}).to_string().into_bytes()
}

/// One attempt: a name, the path, the headers, the body, and whether it must pass.
struct Case {
    name: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    passes: bool,
}

fn case(name: &str, path: &str, headers: Vec<(&str, String)>, body: Vec<u8>, passes: bool) -> Case {
    Case {
        name: name.to_owned(),
        path: path.to_owned(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body,
        passes,
    }
}

/// The attacks on one plain-signature scheme (`segment`, `hmac_sha256` hex or base64):
/// `sign(secret, body)` gives the header value a sender would send.
fn plain_scheme(
    src: &str,
    header: &str,
    secret: &str,
    sign: &dyn Fn(&str, &[u8]) -> String,
) -> Vec<Case> {
    let path = format!("/webhooks/{src}");
    let b = |n: &str| body(&format!("{src}-{n}"));
    let good = |n: &str| sign(secret, &b(n));
    let other = body("some-other-body");
    let h = |v: String| vec![(header, v)];
    let mut cases = vec![
        case("valid", &path, h(good("valid")), b("valid"), true),
        case(
            "wrong secret",
            &path,
            h(sign("not-the-secret", &b("ws"))),
            b("ws"),
            false,
        ),
        case(
            "tampered body",
            &path,
            h(good("tb")),
            b("tb-tampered"),
            false,
        ),
        case(
            "signature of a different body",
            &path,
            h(sign(secret, &other)),
            b("db"),
            false,
        ),
        case("empty header", &path, h(String::new()), b("eh"), false),
        case("missing header", &path, vec![], b("mh"), false),
        case(
            "header of the other scheme",
            &path,
            vec![("x-signature-256", good("os"))],
            b("os"),
            false,
        ),
        case(
            "two signatures, one valid (comma)",
            &path,
            h(format!("{},{}", good("c2"), "00".repeat(20))),
            b("c2"),
            false,
        ),
        case(
            "two signatures, one valid (space)",
            &path,
            h(format!("{} {}", "00".repeat(20), good("s2"))),
            b("s2"),
            false,
        ),
        case(
            "body with a trailing space",
            &path,
            h(good("ts")),
            [b("ts"), b" ".to_vec()].concat(),
            false,
        ),
    ];
    let v = good("tr");
    cases.push(case(
        "truncated",
        &path,
        h(v[..v.len() - 2].to_owned()),
        b("tr"),
        false,
    ));
    cases.push(case(
        "truncated to one byte",
        &path,
        h(v[..2].to_owned()),
        b("tr1"),
        false,
    ));
    cases.push(case(
        "extended",
        &path,
        h(format!("{}00", good("ex"))),
        b("ex"),
        false,
    ));
    cases.push(case(
        "doubled",
        &path,
        h(good("dd").repeat(2)),
        b("dd"),
        false,
    ));
    cases
}

fn standard_webhooks(family: &str, now: i64) -> Vec<Case> {
    let path = "/webhooks/sw";
    let b = |n: &str| body(&format!("sw-{family}-{n}"));
    let hs = |id: &str, ts: i64, sig: String| {
        vec![
            (format!("{family}-id"), id.to_owned()),
            (format!("{family}-timestamp"), ts.to_string()),
            (format!("{family}-signature"), sig),
        ]
    };
    let c = |name: &str, headers: Vec<(String, String)>, body: Vec<u8>, passes: bool| Case {
        name: format!("{family}: {name}"),
        path: path.to_owned(),
        headers,
        body,
        passes,
    };
    let sig = |n: &str, ts: i64| sw_sign(SW, "msg_1", ts, &b(n));
    let other_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let good = sig("tr", now);
    vec![
        c(
            "valid",
            hs("msg_1", now, sig("valid", now)),
            b("valid"),
            true,
        ),
        c(
            "wrong secret",
            hs("msg_1", now, sw_sign(other_key, "msg_1", now, &b("ws"))),
            b("ws"),
            false,
        ),
        c(
            "tampered body",
            hs("msg_1", now, sig("tb", now)),
            b("tb-x"),
            false,
        ),
        c(
            "signature of a different body",
            hs("msg_1", now, sw_sign(SW, "msg_1", now, &body("other"))),
            b("db"),
            false,
        ),
        c(
            "another webhook-id",
            hs("msg_2", now, sig("id", now)),
            b("id"),
            false,
        ),
        c(
            "another timestamp",
            hs("msg_1", now + 1, sig("ts", now)),
            b("ts"),
            false,
        ),
        c(
            "truncated",
            hs("msg_1", now, good[..good.len() - 4].to_owned()),
            b("tr"),
            false,
        ),
        c(
            "extended",
            hs("msg_1", now, format!("{}AAAA", sig("ex", now))),
            b("ex"),
            false,
        ),
        c(
            "empty signature",
            hs("msg_1", now, String::new()),
            b("es"),
            false,
        ),
        c(
            "scheme v2",
            hs("msg_1", now, sig("v2", now).replacen("v1,", "v2,", 1)),
            b("v2"),
            false,
        ),
        c(
            "no scheme",
            hs("msg_1", now, sig("ns", now)[3..].to_owned()),
            b("ns"),
            false,
        ),
        c(
            "many, none valid",
            hs("msg_1", now, format!("v1,AAAA v1,{} v1a,x", "B".repeat(44))),
            b("mn"),
            false,
        ),
        c(
            "many, one valid",
            hs("msg_1", now, format!("v1,AAAA {} v1,BBBB", sig("m1", now))),
            b("m1"),
            true,
        ),
        c(
            "timestamp now-301 s, signed",
            hs("msg_1", now - 301, sig("old", now - 301)),
            b("old"),
            false,
        ),
        c(
            "timestamp now+301 s, signed",
            // +302: the server reads its clock up to a second after `now` was taken.
            hs("msg_1", now + 302, sig("new", now + 302)),
            b("new"),
            false,
        ),
        c(
            "timestamp now-290 s, signed",
            hs("msg_1", now - 290, sig("o290", now - 290)),
            b("o290"),
            true,
        ),
        c(
            "timestamp not a number",
            hs("msg_1", now, sig("nn", now))
                .into_iter()
                .map(|(k, v)| {
                    if k.ends_with("timestamp") {
                        (k, "soon".into())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            b("nn"),
            false,
        ),
        c(
            "no id header",
            hs("msg_1", now, sig("ni", now))
                .into_iter()
                .filter(|(k, _)| !k.ends_with("-id"))
                .collect(),
            b("ni"),
            false,
        ),
    ]
}

fn token_cases() -> Vec<Case> {
    let b = |n: &str| body(&format!("tok-{n}"));
    let p = "/webhooks/tok";
    let t = TOKEN;
    let bearer = |v: &str| vec![("authorization", v.to_owned())];
    vec![
        case("path: valid", &format!("{p}/{t}"), vec![], b("path"), true),
        case(
            "path: wrong",
            &format!("{p}/tok_0123456789abcdeX"),
            vec![],
            b("pw"),
            false,
        ),
        case(
            "path: truncated",
            &format!("{p}/{}", &t[..t.len() - 1]),
            vec![],
            b("pt"),
            false,
        ),
        case(
            "path: extended",
            &format!("{p}/{t}0"),
            vec![],
            b("pe"),
            false,
        ),
        case(
            "path: upper case",
            &format!("{p}/{}", t.to_uppercase()),
            vec![],
            b("pu"),
            false,
        ),
        case(
            "query: valid",
            &format!("{p}?token={t}"),
            vec![],
            b("query"),
            true,
        ),
        case(
            "query: wrong",
            &format!("{p}?token=tok_0123456789abcdeX"),
            vec![],
            b("qw"),
            false,
        ),
        case(
            "query: empty",
            &format!("{p}?token="),
            vec![],
            b("qe"),
            false,
        ),
        case(
            "query: other name",
            &format!("{p}?access_token={t}"),
            vec![],
            b("qo"),
            false,
        ),
        case(
            "query: prefix only",
            &format!("{p}?token={}", &t[..8]),
            vec![],
            b("qp"),
            false,
        ),
        case(
            "bearer: valid",
            p,
            bearer(&format!("Bearer {t}")),
            b("bearer"),
            true,
        ),
        case(
            "bearer: wrong",
            p,
            bearer("Bearer tok_0123456789abcdeX"),
            b("bw"),
            false,
        ),
        case("bearer: no token", p, bearer("Bearer"), b("bn"), false),
        case("bearer: empty token", p, bearer("Bearer "), b("be"), false),
        case(
            "basic with the token",
            p,
            bearer(&format!("Basic {}", STANDARD.encode(format!("{t}:")))),
            b("basic"),
            false,
        ),
        case("token without a scheme", p, bearer(t), b("ns"), false),
        case(
            "token in another header",
            p,
            vec![("x-token", t.to_owned())],
            b("xh"),
            false,
        ),
        case(
            "token in the body",
            p,
            vec![],
            json!({"messageId": "tok-body", "token": t})
                .to_string()
                .into_bytes(),
            false,
        ),
        case("none", p, vec![], b("none"), false),
    ]
}

async fn runs(app: &TestApp, src: &str) -> usize {
    let (_, logs) = app
        .get(&format!("/api/v1/sources/{src}/function-logs?limit=1000"))
        .await;
    logs["runs"].as_array().map_or(0, Vec::len)
}

async fn send(app: &TestApp, c: &Case) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.post_with(&c.path, &headers, &c.body).await
}

/// Every forgery answers 401 `unverified`, shows as `unverified`, and runs nothing; every
/// valid request runs once, and the same valid request again (same signature, same
/// messageId) answers 200 `duplicate` and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_webhook_signatures_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.js"), RUN).unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path())).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let b64 = |s: &str, b: &[u8]| format!("sha256={}", STANDARD.encode(sha256(s.as_bytes(), &[b])));
    // Standard Webhooks first, so little time passes between `now` and the requests.
    let mut cases = standard_webhooks("webhook", now);
    cases.extend(standard_webhooks("svix", now));
    cases.extend(plain_scheme("seg", "x-signature", SEG, &|s, b| {
        sha1_hex(s, b)
    }));
    cases.extend(plain_scheme("hex", "x-sig-hex", HEX, &|s, b| {
        hex::encode(sha256(s.as_bytes(), &[b]))
    }));
    cases.extend(plain_scheme("b64", "x-sig-b64", B64, &b64));
    let bb = body("b64-np");
    cases.push(case(
        "b64: without the prefix",
        "/webhooks/b64",
        vec![("x-sig-b64", b64(B64, &bb)[7..].to_owned())],
        bb,
        false,
    ));
    let bb = body("b64-pp");
    cases.push(case(
        "b64: prefix twice",
        "/webhooks/b64",
        vec![("x-sig-b64", format!("sha256={}", b64(B64, &bb)))],
        bb,
        false,
    ));
    let bb = body("b64-hex");
    cases.push(case(
        "b64: hex instead of base64",
        "/webhooks/b64",
        vec![(
            "x-sig-b64",
            format!("sha256={}", hex::encode(sha256(B64.as_bytes(), &[&bb]))),
        )],
        bb,
        false,
    ));
    cases.extend(token_cases());

    let mut failures = Vec::new();
    let mut unverified_expected: std::collections::HashMap<String, usize> = Default::default();
    let mut runs_expected: std::collections::HashMap<String, usize> = Default::default();
    for c in &cases {
        let src = c.path.trim_start_matches("/webhooks/");
        let src = src.split(['/', '?']).next().unwrap().to_owned();
        let (status, resp) = send(&app, c).await;
        if c.passes {
            *runs_expected.entry(src.clone()).or_default() += 1;
            if (status, resp["emitted"].as_u64()) != (StatusCode::OK, Some(1)) {
                failures.push(format!("{}: valid request got {status} {resp}", c.name));
                continue;
            }
            // The replay: byte for byte the same request.
            let (status, resp) = send(&app, c).await;
            if (status, resp["duplicate"].as_bool()) != (StatusCode::OK, Some(true)) {
                failures.push(format!("{}: replay got {status} {resp}", c.name));
            }
        } else {
            *unverified_expected.entry(src.clone()).or_default() += 1;
            if (status, resp["code"].as_str()) != (StatusCode::UNAUTHORIZED, Some("unverified")) {
                failures.push(format!("{}: forgery got {status} {resp}", c.name));
            }
        }
    }
    for src in ["seg", "sw", "hex", "b64", "tok"] {
        let got = runs(&app, src).await;
        let want = runs_expected.get(src).copied().unwrap_or(0);
        if got != want {
            failures.push(format!("{src}: {got} runs, want {want} (one per valid request, none for forgeries or replays)"));
        }
        let shown = app
            .recent_of(src, "status=unverified&limit=1000")
            .await
            .len();
        let want = unverified_expected.get(src).copied().unwrap_or(0);
        if shown != want {
            failures.push(format!("{src}: {shown} shown as unverified, want {want}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "signatures: {} attacks, all answered as expected",
        cases.len()
    );
    app.stop().await;
}
