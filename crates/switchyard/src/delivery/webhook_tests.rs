//! Building, signing and classifying Webhooks (Actions) requests.

use serde_json::json;

use super::*;
use crate::delivery::store::Request;
use crate::fql::Fql;
use crate::mapping::Mapping;

fn mapping(data: Value, headers: Vec<(&str, Value)>) -> MappingConfig {
    MappingConfig {
        name: "Send to Knock".into(),
        enabled: crate::config::Enabled::All(true),
        subscribe: Fql::parse(r#"type = "track""#).unwrap(),
        url: Mapping::compile(json!({"@template": "https://hooks.example/{{userId}}"})).unwrap(),
        method: "POST".into(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Mapping::compile(v).unwrap()))
            .collect(),
        data: Mapping::compile(data).unwrap(),
        batch_size: 0,
    }
}

fn resp(status: u16) -> Result<Response, SendError> {
    Ok(Response {
        status,
        body_prefix: String::new(),
        retry_after: None,
        location: None,
    })
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

#[test]
fn failure_classes() {
    assert_eq!(classify(&resp(204)), Outcome::Delivered);
    for s in [408, 423, 429, 500, 502, 503, 504, 505, 599] {
        assert!(
            matches!(classify(&resp(s)), Outcome::Retry { .. }),
            "{s} retries"
        );
    }
    for s in [301, 400, 401, 403, 404, 410, 413, 422, 501] {
        assert!(
            matches!(classify(&resp(s)), Outcome::Permanent(_)),
            "{s} is permanent"
        );
    }
    assert!(matches!(
        classify(&Err(SendError::Timeout)),
        Outcome::Retry { .. }
    ));
    assert!(matches!(
        classify(&Err(SendError::Egress("no".into()))),
        Outcome::Permanent(_)
    ));
}

#[test]
fn signatures_per_attempt() {
    let http = HttpRequest {
        url: "u".into(),
        method: "POST".into(),
        headers: vec![],
        body: r#"{"cool":true}"#.into(),
        signed: r#"{"cool":true}"#.into(),
    };
    let p = Pending {
        id: 1,
        seq: 1,
        source: "web".into(),
        message_id: "m-1".into(),
        mapping: "Send".into(),
        received_ms: 0,
        request: Request::Http(http.clone()),
        attempts: 0,
        next_at_ms: 0,
        last_status: None,
        last_error: None,
        members: Vec::new(),
    };
    let h = attempt_headers(&p, &http, &Signing::Segment("abc123".into()), "knock", 0);
    assert_eq!(
        h,
        vec![(
            "x-signature".to_owned(),
            "5099cab379b3be52908387457007040cc934ef86".to_owned()
        )]
    );
    let key =
        crate::signing::StandardWebhooks::from_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
            .unwrap();
    let h = attempt_headers(
        &p,
        &http,
        &Signing::StandardWebhooks(key.clone()),
        "knock",
        1_649_367_553_000,
    );
    let get = |k: &str| {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        get("webhook-id"),
        crate::signing::webhook_id("web", "m-1", "knock", "Send")
    );
    assert_eq!(get("webhook-timestamp"), "1649367553");
    assert!(
        key.verify(
            &get("webhook-id"),
            &get("webhook-timestamp"),
            http.body.as_bytes(),
            &get("webhook-signature"),
            1_649_367_553
        )
        .is_ok()
    );
}
