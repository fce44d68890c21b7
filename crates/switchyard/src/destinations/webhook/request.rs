//! A `webhook` destination's requests (docs/destinations.md#webhook-destinations): one per
//! event and matching mapping, with the mapped URL, method, headers and body and our fixed
//! headers. The signature is added at each attempt (`delivery/webhook.rs`).

use serde_json::Value;

use crate::config::MappingConfig;
use crate::delivery::store::HttpRequest;
use crate::delivery::webhook::ascii_or_encoded;

/// Builds the request of one (event, mapping), or the permanent reason it cannot be built.
pub fn build(
    mapping: &MappingConfig,
    event: &Value,
    message_id: &str,
) -> Result<HttpRequest, String> {
    let url = match mapping
        .url
        .evaluate(event)
        .map_err(|e| format!("url mapping failed: {e}"))?
    {
        Some(Value::String(u)) => u,
        other => {
            return Err(format!(
                "the url mapping gave {}, not a string",
                describe(other.as_ref())
            ));
        }
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| format!("the url {url:?} is not a valid URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("the url {url:?} is not an absolute http(s) URL"));
    }
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), "Segment (Actions)".to_owned()),
        (
            "x-switchyard-mapping".to_owned(),
            ascii_or_encoded(&mapping.name),
        ),
        ("idempotency-key".to_owned(), ascii_or_encoded(message_id)),
    ];
    for (name, value) in &mapping.headers {
        let v = match value
            .evaluate(event)
            .map_err(|e| format!("header {name} mapping failed: {e}"))?
        {
            None => continue,
            Some(Value::String(s)) => s,
            Some(other) => crate::mapping::js_string(&other),
        };
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
            return Err(format!(
                "header {name} value is not ASCII (payload validation failed)"
            ));
        }
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        headers.push((name.clone(), v));
    }
    let body = match mapping
        .data
        .evaluate(event)
        .map_err(|e| format!("data mapping failed: {e}"))?
    {
        Some(obj @ Value::Object(_)) => serde_json::to_string(&obj).map_err(|e| e.to_string())?,
        other => {
            return Err(format!(
                "data must resolve to an object, got {} (payload validation failed)",
                describe(other.as_ref())
            ));
        }
    };
    Ok(HttpRequest {
        url,
        method: mapping.method.clone(),
        headers,
        signed: body.clone(),
        body,
    })
}

fn describe(v: Option<&Value>) -> &'static str {
    match v {
        None => "nothing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fql::Fql;
    use crate::mapping::Mapping;

    fn mapping(data: Value, headers: Vec<(&str, Value)>) -> MappingConfig {
        MappingConfig {
            name: "Send to Knock".into(),
            enabled: crate::config::Enabled::All(true),
            subscribe: Fql::parse(r#"type = "track""#).unwrap(),
            url: Mapping::compile(json!({"@template": "https://hooks.example/{{userId}}"}))
                .unwrap(),
            method: "POST".into(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Mapping::compile(v).unwrap()))
                .collect(),
            data: Mapping::compile(data).unwrap(),
            batch_size: 0,
        }
    }

    #[test]
    fn builds_the_mapped_request() {
        let m = mapping(
            json!({"email": {"@path": "$.properties.email"}, "name": "fixed"}),
            vec![
                ("X-Env", json!("prod")),
                ("X-User", json!({"@path": "$.userId"})),
            ],
        );
        let ev = json!({"type": "track", "userId": "u1", "properties": {"email": "a@b.c"}});
        let r = build(&m, &ev, "m-1").unwrap();
        assert_eq!(r.url, "https://hooks.example/u1");
        assert_eq!(
            r.body, r#"{"email":"a@b.c","name":"fixed"}"#,
            "compact, in mapping order"
        );
        let h = |k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            (h("content-type"), h("user-agent"), h("idempotency-key")),
            (
                Some("application/json"),
                Some("Segment (Actions)"),
                Some("m-1")
            )
        );
        assert_eq!(
            (h("X-Env"), h("X-User"), h("x-switchyard-mapping")),
            (Some("prod"), Some("u1"), Some("Send%20to%20Knock"))
        );
    }

    #[test]
    fn payload_validation_failures_are_permanent_reasons() {
        let ev = json!({"type": "track", "userId": "u1", "properties": {"name": "Zoë"}});
        let not_object = mapping(json!({"@path": "$.userId"}), vec![]);
        assert!(
            build(&not_object, &ev, "m")
                .unwrap_err()
                .contains("must resolve to an object")
        );
        let non_ascii = mapping(
            json!({"a": 1}),
            vec![("X-Name", json!({"@path": "$.properties.name"}))],
        );
        assert!(
            build(&non_ascii, &ev, "m")
                .unwrap_err()
                .contains("not ASCII")
        );
    }
}
