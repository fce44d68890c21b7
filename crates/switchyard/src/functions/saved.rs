//! Segment's function editor "Run" (docs/functions.md): a saved request in, the emitted events,
//! console output and error out, nothing stored. Shared by `switchyard test-function` and
//! `POST /api/v1/sources/{id}/test-function`.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{FnError, FnRequest, LogLine, Outcome};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    #[serde(default)]
    headers: IndexMap<String, Value>,
    body: Value,
    #[serde(default)]
    url: Option<String>,
}

/// Reads a saved request `{"headers", "body", "url"?}`; anything not of that shape is the
/// raw body, with no headers.
pub fn parse(bytes: &[u8], source: &str) -> FnRequest {
    let default_url = format!("http://localhost/webhooks/{source}");
    match serde_json::from_slice::<Saved>(bytes) {
        Ok(s) => FnRequest {
            body: match s.body {
                Value::String(text) => text,
                other => other.to_string(),
            },
            headers: s
                .headers
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
            url: s.url.unwrap_or(default_url),
        },
        Err(_) => FnRequest {
            body: String::from_utf8_lossy(bytes).into_owned(),
            headers: Vec::new(),
            url: default_url,
        },
    }
}

/// What a test run shows.
#[derive(Serialize)]
pub struct Report {
    pub events: Vec<Box<RawValue>>,
    pub objects: Vec<Box<RawValue>>,
    pub logs: Vec<LogLine>,
    pub error: Option<FnError>,
    pub duration_ms: f64,
}

impl From<Outcome> for Report {
    fn from(o: Outcome) -> Report {
        Report {
            events: o.events,
            objects: o.objects,
            logs: o.logs,
            error: o.error,
            duration_ms: o.duration.as_secs_f64() * 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_shapes() {
        let r = parse(
            br#"{"headers":{"X-A":"1"},"body":{"k":1},"url":"https://h/x?y=1"}"#,
            "kno",
        );
        assert_eq!(
            (r.body.as_str(), r.url.as_str()),
            (r#"{"k":1}"#, "https://h/x?y=1")
        );
        assert_eq!(r.headers, vec![("X-A".to_owned(), "1".to_owned())]);
        let r = parse(br#"{"body":"a=1&b=2"}"#, "kno");
        assert_eq!(
            (r.body.as_str(), r.url.as_str()),
            ("a=1&b=2", "http://localhost/webhooks/kno")
        );
        let raw = parse(br#"{"customerId":"c1"}"#, "kno");
        assert_eq!(
            (raw.body.as_str(), raw.headers.len()),
            (r#"{"customerId":"c1"}"#, 0)
        );
    }
}
