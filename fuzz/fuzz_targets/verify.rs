//! Webhook source verification: any signature headers, timestamp and body are refused with a
//! reason (the fuzzer cannot forge an HMAC), and never panic the parser.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchyard::config::{Config, SourceKind, WebhookSource};
use switchyard::webhooks::verify::{Presented, authenticate};

const CONFIG: &str = r#"
server: { listen: 127.0.0.1:0, data_dir: /tmp/switchyard-fuzz }
sources:
  - { id: seg, type: webhook, verify: { scheme: segment, secret: s3cret, allow_unsigned_batch_tail: true } }
  - { id: sw, type: webhook, verify: { scheme: standard_webhooks, secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD" } }
  - { id: gh, type: webhook, verify: { scheme: hmac_sha256, secret: s3cret, header: X-Hub-Signature-256, prefix: "sha256=" } }
  - { id: b64, type: webhook, verify: { scheme: hmac_sha256, secret: s3cret, header: X-Sig, encoding: base64 } }
  - { id: tok, type: webhook, token: "a-long-token-value" }
"#;

fn sources() -> &'static Vec<WebhookSource> {
    static SOURCES: OnceLock<Vec<WebhookSource>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let (config, problems) = switchyard::config::compile_str(CONFIG, "fuzz.yaml", &|_| None);
        let config: Config = config.unwrap_or_else(|| panic!("{problems:?}"));
        config
            .sources
            .into_iter()
            .filter_map(|s| match s.kind {
                SourceKind::Webhook(w) => Some(*w),
                SourceKind::HttpApi { .. } => None,
            })
            .collect()
    })
}

const HEADERS: [&str; 9] = [
    "x-signature", "webhook-id", "webhook-timestamp", "webhook-signature", "svix-signature",
    "x-hub-signature-256", "x-sig", "authorization", "svix-timestamp",
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let mut headers = HeaderMap::new();
    for name in HEADERS {
        if let Some(v) = parts.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let token = parts.next().and_then(|t| std::str::from_utf8(t).ok());
    let body = parts.next().unwrap_or_default();
    let now = data.iter().fold(1_700_000_000i64, |acc, b| acc.wrapping_mul(31).wrapping_add(i64::from(*b)));
    for src in sources() {
        let presented = Presented { path_token: token, query: token };
        let got = authenticate(src, presented, &headers, body, now);
        assert!(got.is_err(), "a forged request passed verification");
    }
});
