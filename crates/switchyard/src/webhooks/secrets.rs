//! The `writeKey` a webhook body may carry (a Segment SDK's or a Segment destination's body) is a
//! secret (docs/security.md#secrets): a stored raw request drops it, and what a run shows (its
//! console output and error, the stored reason) has its value redacted.
//!
//! Only the top level is touched: the key of a JSON object body, and of each object element
//! of a JSON array body. Any other body is left byte for byte.
//!
//! A run can print more than the writeKey: `of_request` gathers every secret value a run of
//! a request may show (the body's writeKeys, the values of its secret headers, the source's
//! token and verify secret, the URL's query values), and `scrub` redacts them from the run's
//! console output, error and stored reason, and from the answer to the caller.

use indexmap::IndexMap;
use serde_json::value::RawValue;

use crate::config::{Verify, WebhookSource};
use crate::functions::FnRequest;

const KEY: &str = "writeKey";
/// Shorter values are not searched for in text: redacting `"a"` everywhere would ruin it.
const MIN_SCRUBBED_LEN: usize = 6;

type Fields<'a> = IndexMap<String, &'a RawValue>;

/// Whether the body could hold the key at all (`\u` escapes can spell it too).
fn may_hold(body: &str) -> bool {
    body.contains(KEY) || body.contains("\\u")
}

fn first_char(raw: &str) -> Option<char> {
    raw.trim_start().chars().next()
}

/// The body without its top-level `writeKey`s, or `None` when it has none (keep it as is).
pub fn without_write_key(body: &str) -> Option<String> {
    if !may_hold(body) {
        return None;
    }
    match first_char(body)? {
        '{' => {
            let mut m: Fields<'_> = serde_json::from_str(body).ok()?;
            m.shift_remove(KEY)?;
            serde_json::to_string(&m).ok()
        }
        '[' => {
            let items: Vec<&RawValue> = serde_json::from_str(body).ok()?;
            let mut changed = false;
            let parts: Vec<String> = items
                .iter()
                .map(|item| {
                    let clean = (first_char(item.get()) == Some('{'))
                        .then(|| without_write_key(item.get()))
                        .flatten();
                    changed |= clean.is_some();
                    clean.unwrap_or_else(|| item.get().to_owned())
                })
                .collect();
            changed.then(|| format!("[{}]", parts.join(",")))
        }
        _ => None,
    }
}

/// The string values of the body's top-level `writeKey`s, for redaction.
pub fn write_keys(body: &str) -> Vec<String> {
    if !may_hold(body) {
        return Vec::new();
    }
    let from_object = |raw: &str| -> Option<String> {
        let m: Fields<'_> = serde_json::from_str(raw).ok()?;
        serde_json::from_str::<String>(m.get(KEY)?.get()).ok()
    };
    let mut keys: Vec<String> = match first_char(body) {
        Some('{') => from_object(body).into_iter().collect(),
        Some('[') => serde_json::from_str::<Vec<&RawValue>>(body)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| from_object(item.get()))
            .collect(),
        _ => Vec::new(),
    };
    keys.retain(|k| k.len() >= MIN_SCRUBBED_LEN);
    keys.sort();
    keys.dedup();
    keys
}

/// Every secret value a run of `req` on `src` may print (each at least 6 characters long):
/// the body's top-level writeKeys; the values of secret headers (`redact::is_secret_header`)
/// and the credential after their scheme (`Bearer x`, `Basic x`); the source's token and
/// verify secret; and the URL's query values.
pub fn of_request(src: &WebhookSource, req: &FnRequest) -> Vec<String> {
    let mut found = write_keys(&req.body);
    for (name, value) in &req.headers {
        if crate::redact::is_secret_header(name) {
            found.push(value.trim().to_owned());
            if let Some((_, credential)) = value.trim().split_once(' ') {
                found.push(credential.trim().to_owned());
            }
        }
    }
    found.extend(src.token.clone());
    match &src.verify {
        Some(Verify::Segment { secret, .. } | Verify::HmacSha256 { secret, .. }) => {
            found.push(secret.clone());
        }
        Some(Verify::StandardWebhooks(_)) | None => {}
    }
    if let Some((_, query)) = req.url.split_once('?') {
        let query = query.split('#').next().unwrap_or(query);
        found.extend(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(_, v)| v.to_owned()),
        );
    }
    found.retain(|k| k.len() >= MIN_SCRUBBED_LEN);
    // Longest first, so a value that contains another is redacted whole.
    found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    found.dedup();
    found
}

/// The URL a stored request keeps: the source's token (a path segment or `?token=`)
/// redacted, the rest as it came.
pub fn stored_url(src: &WebhookSource, url: &str) -> String {
    match &src.token {
        Some(t) => scrub(url, std::slice::from_ref(t)),
        None => url.to_owned(),
    }
}

/// `text` with every occurrence of a secret replaced by its redacted form.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |t, s| {
        if t.contains(s.as_str()) {
            t.replace(s.as_str(), &crate::redact::redacted(s))
        } else {
            t
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_level_write_key_is_dropped_and_the_rest_kept() {
        assert_eq!(
            without_write_key(r#"{"a":1,"writeKey":"wk_secret_1","b":{"writeKey":"x"}}"#)
                .as_deref(),
            Some(r#"{"a":1,"b":{"writeKey":"x"}}"#),
            "only the top level; the order is kept"
        );
        assert_eq!(
            without_write_key(r#"[{"writeKey":"wk_1","n":1}, 5, {"n":2}]"#).as_deref(),
            Some(r#"[{"n":1},5,{"n":2}]"#)
        );
        assert_eq!(
            without_write_key(r#"{"write\u004bey":"wk_escaped"}"#).as_deref(),
            Some("{}"),
            "an escaped spelling is the same key"
        );
        for untouched in [
            r#"{"a": 1}"#,
            r#"[{"a": 1}]"#,
            "writeKey=wk_form",
            r#""writeKey""#,
            r#"{"writeKey": "#,
            "",
        ] {
            assert_eq!(without_write_key(untouched), None, "{untouched}");
        }
    }

    #[test]
    fn write_keys_are_found_and_scrubbed_from_text() {
        let body = r#"[{"writeKey":"wk_secret_1"},{"writeKey":"wk_secret_1"},{"writeKey":7},{"writeKey":"abc"}]"#;
        assert_eq!(write_keys(body), ["wk_secret_1"]);
        assert_eq!(write_keys(r#"{"writeKey":"wk_secret_2"}"#), ["wk_secret_2"]);
        let keys = write_keys(r#"{"writeKey":"wk_secret_2"}"#);
        let shown = scrub("body: {\"writeKey\":\"wk_secret_2\"}", &keys);
        assert!(
            !shown.contains("wk_secret_2") && shown.contains("***:"),
            "{shown}"
        );
        assert_eq!(scrub("nothing here", &keys), "nothing here");
    }

    #[test]
    fn every_secret_of_a_request_and_its_source_is_found() {
        let src = WebhookSource {
            environment: "production".into(),
            function: None,
            token: Some("src_token_0123456789".into()),
            verify: Some(Verify::Segment {
                secret: "seg_secret_1".into(),
                allow_unsigned_batch_tail: false,
            }),
            public: false,
            idempotency: None,
        };
        let req = FnRequest {
            body: r#"{"writeKey":"wk_secret_9"}"#.into(),
            headers: vec![
                ("Authorization".into(), "Bearer bearer_secret".into()),
                ("Cookie".into(), "sid=cookie_secret".into()),
                ("X-Shop-Key".into(), "key_secret".into()),
                ("X-Env".into(), "production".into()),
            ],
            url: "http://h/webhooks/s/src_token_0123456789?code=query_secret&x=1#frag".into(),
        };
        let found = of_request(&src, &req);
        for want in [
            "wk_secret_9",
            "Bearer bearer_secret",
            "bearer_secret",
            "sid=cookie_secret",
            "key_secret",
            "src_token_0123456789",
            "seg_secret_1",
            "query_secret",
        ] {
            assert!(found.iter().any(|f| f == want), "{want}: {found:?}");
        }
        assert!(
            !found.iter().any(|f| f == "production" || f == "1"),
            "{found:?}"
        );
        let shown = scrub("auth Bearer bearer_secret", &found);
        assert!(
            shown.starts_with("auth ***:") && !shown.contains("bearer_secret"),
            "{shown}"
        );
        assert_eq!(
            stored_url(&src, &req.url),
            format!(
                "http://h/webhooks/s/{}?code=query_secret&x=1#frag",
                crate::redact::redacted("src_token_0123456789")
            )
        );
    }
}
