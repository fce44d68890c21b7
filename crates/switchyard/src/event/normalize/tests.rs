use serde_json::{Value, json};

use super::*;

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("valid JSON")
}

fn cx<'a>(envelope: &'a [(&str, Box<RawValue>)]) -> RequestContext<'a> {
    let get = |k: &str| {
        envelope
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_ref())
    };
    RequestContext {
        source: "web",
        environment: "production",
        received_at: timestamp::parse("2024-01-01T00:05:00.000Z").expect("valid"),
        path_type: None,
        sent_at: get("sentAt"),
        context: get("context"),
        integrations: get("integrations"),
    }
}

fn ok(event: Value, envelope: &[(&str, Box<RawValue>)]) -> Value {
    let n = normalize(&raw(&event), &cx(envelope)).expect("accepted");
    serde_json::from_slice(&n.body).expect("normalised body is JSON")
}

fn rejected(event: Value) -> &'static str {
    normalize(&raw(&event), &cx(&[]))
        .expect_err("rejected")
        .code
}

#[test]
fn fills_server_fields_and_corrects_skew() {
    let env = [("sentAt", raw(&json!("2024-01-01T00:00:10.000Z")))];
    let e = ok(
        json!({"type": "track", "event": "Signed Up", "userId": "u1", "timestamp": "2024-01-01T00:00:00Z", "writeKey": "secret", "properties": {"plan": "pro"}}),
        &env,
    );
    assert_eq!(e["timestamp"], "2024-01-01T00:04:50.000Z");
    assert_eq!(e["originalTimestamp"], "2024-01-01T00:00:00.000Z");
    assert_eq!(e["sentAt"], "2024-01-01T00:00:10.000Z");
    assert_eq!(e["receivedAt"], "2024-01-01T00:05:00.000Z");
    assert_eq!(e["version"], 2);
    assert_eq!(e["properties"], json!({"plan": "pro"}));
    assert_eq!(
        e["context"]["switchyard"],
        json!({"source": "web", "environment": "production"})
    );
    assert!(e.get("writeKey").is_none(), "writeKey is stripped");
    assert!(
        e["messageId"]
            .as_str()
            .is_some_and(|m| m.starts_with("api-")),
        "messageId is filled in"
    );
}

#[test]
fn no_client_timestamp_means_received_at_and_no_original() {
    let e = ok(
        json!({"type": "identify", "userId": "u1", "originalTimestamp": "1999-01-01T00:00:00Z"}),
        &[],
    );
    assert_eq!(e["timestamp"], "2024-01-01T00:05:00.000Z");
    assert!(
        e.get("originalTimestamp").is_none(),
        "a client-sent originalTimestamp is ignored"
    );
}

#[test]
fn unparseable_timestamp_is_absent_with_a_warning() {
    let n = normalize(
        &raw(&json!({"type": "identify", "userId": "u1", "timestamp": "last tuesday"})),
        &cx(&[]),
    )
    .unwrap();
    let e: Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(e["timestamp"], "2024-01-01T00:05:00.000Z");
    assert_eq!(n.warnings.len(), 1);
    assert!(n.warnings[0].contains("timestamp"));
}

#[test]
fn ids_are_coerced_and_null_is_absent() {
    let e = ok(
        json!({"type": "identify", "userId": 42, "anonymousId": null}),
        &[],
    );
    assert_eq!(e["userId"], "42");
    assert!(e.get("anonymousId").is_none());
    let e = ok(
        json!({"type": "group", "anonymousId": "a", "groupId": 7.5}),
        &[],
    );
    assert_eq!(e["groupId"], "7.5");
}

#[test]
fn required_fields() {
    assert_eq!(
        rejected(json!({"type": "track", "event": "x", "userId": null, "anonymousId": null})),
        "no_user_anon_id"
    );
    assert_eq!(
        rejected(json!({"type": "track", "userId": "u"})),
        "missing_event_name"
    );
    assert_eq!(
        rejected(json!({"type": "track", "event": "", "userId": "u"})),
        "missing_event_name"
    );
    assert_eq!(
        rejected(json!({"type": "group", "userId": "u"})),
        "missing_group_id"
    );
    assert_eq!(
        rejected(json!({"type": "alias", "anonymousId": "a", "previousId": "p"})),
        "invalid_alias"
    );
    assert_eq!(
        rejected(json!({"type": "launch", "userId": "u"})),
        "invalid_type"
    );
    assert_eq!(rejected(json!({"userId": "u"})), "missing_type");
    assert_eq!(
        rejected(json!({"type": "identify", "userId": {"a": 1}})),
        "invalid_id"
    );
    assert_eq!(rejected(json!([1, 2])), "invalid_event");
    ok(json!({"type": "page", "anonymousId": "a"}), &[]);
    ok(json!({"type": "screen", "userId": "u"}), &[]);
    ok(
        json!({"type": "alias", "userId": "u", "previousId": "p"}),
        &[],
    );
}

#[test]
fn message_id_limits() {
    let long = "x".repeat(101);
    assert_eq!(
        rejected(json!({"type": "identify", "userId": "u", "messageId": long})),
        "message_id_too_long"
    );
    let e = ok(
        json!({"type": "identify", "userId": "u", "messageId": "é".repeat(100)}),
        &[],
    );
    assert_eq!(
        e["messageId"].as_str().map(|s| s.chars().count()),
        Some(100),
        "the limit counts characters"
    );
    let r = normalize(
        &raw(&json!({"type": "track", "userId": "u", "messageId": "m-1"})),
        &cx(&[]),
    )
    .unwrap_err();
    assert_eq!(
        r.message_id.as_deref(),
        Some("m-1"),
        "a rejection keeps the messageId for the debugger"
    );
}

#[test]
fn oversized_event_is_rejected() {
    let big = "x".repeat(MAX_EVENT_BYTES);
    assert_eq!(
        rejected(json!({"type": "track", "event": "e", "userId": "u", "properties": {"p": big}})),
        "event_too_large"
    );
}

#[test]
fn envelope_context_and_integrations_merge_element_wins() {
    let env = [
        (
            "context",
            raw(
                &json!({"library": {"name": "analytics-python", "version": "2.4.0"}, "locale": "en-US"}),
            ),
        ),
        (
            "integrations",
            raw(&json!({"All": true, "Salesforce": false})),
        ),
    ];
    let e = ok(
        json!({"type": "track", "event": "e", "userId": "u", "context": {"locale": "fr-FR", "page": {"path": "/"}}, "integrations": {"Salesforce": true}}),
        &env,
    );
    assert_eq!(e["context"]["library"]["name"], "analytics-python");
    assert_eq!(e["context"]["locale"], "fr-FR");
    assert_eq!(e["context"]["page"]["path"], "/");
    assert_eq!(e["integrations"], json!({"All": true, "Salesforce": true}));
}

#[test]
fn path_type_wins_and_field_order_is_kept() {
    let mut c = cx(&[]);
    c.path_type = Some(EventType::Track);
    let n = normalize(
        &raw(&json!({"event": "e", "userId": "u", "properties": {"b": 1, "a": 2}})),
        &c,
    )
    .unwrap();
    let text = String::from_utf8(n.body).unwrap();
    assert!(
        text.starts_with(r#"{"event":"e","userId":"u","properties":{"b":1,"a":2},"type":"track""#),
        "{text}"
    );
}

#[test]
fn rejected_display_strips_write_key() {
    let shown: Value =
        serde_json::from_slice(&rejected_display(r#"{"writeKey":"s","type":"x"}"#)).unwrap();
    assert_eq!(shown, json!({"type": "x"}));
    let shown: Value = serde_json::from_slice(&rejected_display("[1,2]")).unwrap();
    assert_eq!(shown, json!([1, 2]));
    let shown: Value = serde_json::from_slice(&rejected_display(&"x".repeat(40_000))).unwrap();
    assert!(
        shown
            .as_str()
            .is_some_and(|s| s.ends_with('…') && s.len() < 3000)
    );
}

proptest::proptest! {
    #[test]
    fn never_panics_on_any_object(s in "\\{(\"[a-zA-Z]{1,10}\":(null|1|\"[^\"\\\\]{0,12}\"|\\{\\}|\\[\\]|true),?){0,6}\"x\":1\\}") {
        if let Ok(r) = RawValue::from_string(s) {
            let _ = normalize(&r, &cx(&[]));
        }
    }
}
