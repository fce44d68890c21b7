//! Trigger conditions × events, read by Segment (`@segment/destination-subscriptions`
//! 3.37.0) and by Switchyard. Wherever Switchyard accepts a condition, it matches exactly the
//! events Segment matches; wherever it refuses one, Segment either reads it differently from
//! its obvious meaning (shown by an event where the two disagree) or it has no single
//! obvious meaning. Every refusal is listed in docs/divergences.md.

use serde_json::{Value, json};
use switchyard::fql::Fql;

use crate::node;

/// Events chosen to tell readings apart (JavaScript lookups, strings vs numbers, …).
pub fn events() -> Vec<Value> {
    vec![
        json!({"type": "track", "event": "Product Added", "userId": "u1",
            "properties": {"price": 120, "total": 500, "name": "Xylophone", "sku": "123", "flag": true,
                "off": false, "zero": 0, "s": "Hello", "nested": {"deep": "baz"}, "list": [{"a": "first"}],
                "and": 1, "0": "zero key", "a.b": 1, "a": {"b": 2}, "nothing": null},
            "traits": {"test": true}, "context": {"foo": "bar"}}),
        json!({"type": "identify", "userId": "42", "traits": {"test": "true", "name": "Ann"}}),
        json!({"type": "page", "name": "Home", "properties": {"price": "120"}}),
        json!({"type": "track", "event": "Order Completed", "userId": 42,
            "properties": {"total": 499, "price": 100, "flag": "true"}}),
        json!({"type": "track", "event": "Old Product", "foo": "x", "properties": null}),
        json!({"type": "null", "event": "null", "userId": "0", "properties": {"constructor": "c"}}),
        json!({"type": "group", "userId": true, "context": {"foo": ""}}),
        json!({}),
    ]
}

/// Segment's answer for one condition.
#[derive(Debug)]
pub struct Answer {
    pub error: Option<String>,
    pub ast: Value,
    pub results: Vec<bool>,
}

/// Segment's parse and matches for each condition against `events`; `None` skips.
pub fn segment(conditions: &[String], events: &[Value]) -> Option<Vec<Answer>> {
    let cases: Vec<Value> = conditions
        .iter()
        .map(|c| json!({"fql": c, "events": events}))
        .collect();
    let out = node::run(
        "fql_oracle.mjs",
        "@segment/destination-subscriptions",
        &json!({"cases": cases}),
    )?;
    let answers = out.as_array().expect("one answer per case");
    assert_eq!(answers.len(), conditions.len());
    Some(
        answers
            .iter()
            .map(|a| Answer {
                error: a["error"].as_str().map(str::to_owned),
                ast: a["ast"].clone(),
                results: serde_json::from_value(a["results"].clone()).unwrap(),
            })
            .collect(),
    )
}

/// Switchyard's matches, or its refusal.
pub fn switchyard(condition: &str, events: &[Value]) -> Result<Vec<bool>, String> {
    let f = Fql::parse(condition).map_err(|e| e.0)?;
    Ok(events.iter().map(|e| f.matches(e)).collect())
}

enum Row {
    /// Accepted, and read as Segment reads it.
    Same,
    /// Refused: Segment's reading differs from this, the obvious one, on some event.
    Misread(fn(&Value) -> bool),
    /// Refused: the condition has no single obvious reading (it is incomplete or garbled).
    Unclear,
}

fn s(e: &Value, k: &str) -> Option<String> {
    e.pointer(k).and_then(Value::as_str).map(str::to_owned)
}

fn is(e: &Value, k: &str, v: &str) -> bool {
    s(e, k).as_deref() == Some(v)
}

fn table() -> Vec<(&'static str, Row)> {
    use Row::*;
    vec![
        // Spacing Segment reads correctly (issue 11 item 2).
        (r#"type="track""#, Same),
        (r#"type= "track""#, Same),
        (r#"type ="identify""#, Same),
        (r#"type!= "track""#, Same),
        ("properties.price =120", Same),
        ("properties.price <121", Same),
        ("properties.price >100", Same),
        ("properties.flag =true", Same),
        ("properties.nothing =null", Same),
        (r#"contains(event,"Product")"#, Same),
        (r#"contains( event , "Product" )"#, Same),
        (r#"contains(event, "Added")or type = "page""#, Same),
        ("properties.and= 1", Same),
        (r"properties.\and = 1", Same),
        (r#"properties.\0 = "zero key""#, Same),
        (r#"properties.list.\0.a = "first""#, Same),
        ("properties.zero.x = 0", Same),
        ("properties.s.length = 5", Same),
        (r#"properties.price > "100""#, Same),
        ("contains(userId, 4)", Same),
        ("userId = 42", Same),
        (
            r#"type = "track" and (event = "Order Completed" or contains(event, "Old"))"#,
            Same,
        ),
        (
            r#"(type = "track" or type = "page") and properties.price != null"#,
            Same,
        ),
        (r#"match(event, "*")"#, Same),
        // Spellings Segment misreads.
        (r#"type!="track""#, Misread(|e| !is(e, "/type", "track"))),
        (r#"type !="track""#, Misread(|e| !is(e, "/type", "track"))),
        (
            "properties.price <=100",
            Misread(|e| {
                e.pointer("/properties/price")
                    .and_then(Value::as_f64)
                    .is_some_and(|p| p <= 100.0)
            }),
        ),
        (
            "properties.total >=500",
            Misread(|e| {
                e.pointer("/properties/total")
                    .and_then(Value::as_f64)
                    .is_some_and(|p| p >= 500.0)
            }),
        ),
        (
            r#"type = "track" or(type = "page")"#,
            Misread(|e| is(e, "/type", "track") || is(e, "/type", "page")),
        ),
        (
            r#"type = "page" or(event = "Old Product")"#,
            Misread(|e| is(e, "/type", "page") || is(e, "/event", "Old Product")),
        ),
        (r#"type == "track""#, Misread(|e| is(e, "/type", "track"))),
        (r#"foo = "x""#, Misread(|e| is(e, "/foo", "x"))),
        (
            r#"type = "track" and foo = "x""#,
            Misread(|e| is(e, "/type", "track") && is(e, "/foo", "x")),
        ),
        (
            r#"type.x = "track""#,
            Misread(|e| is(e, "/type/x", "track")),
        ),
        (
            "event = 'Product Added'",
            Misread(|e| is(e, "/event", "Product Added")),
        ),
        (
            "event = Order Completed",
            Misread(|e| is(e, "/event", "Order Completed")),
        ),
        (
            r#"type = "track" and type = "page" or"#,
            Misread(|e| is(e, "/type", "track") && is(e, "/type", "page")),
        ),
        (
            r#"type = "page" or type = "track" and event = "Old Product""#,
            Misread(|e| {
                is(e, "/type", "page")
                    || (is(e, "/type", "track") && is(e, "/event", "Old Product"))
            }),
        ),
        (r#"((type = "page"))"#, Misread(|e| is(e, "/type", "page"))),
        (
            r#"type = "page" or (contains(event, "Old") and type = "group")"#,
            Misread(|e| {
                is(e, "/type", "page")
                    || (s(e, "/event").is_some_and(|v| v.contains("Old"))
                        && is(e, "/type", "group"))
            }),
        ),
        (
            r#"!(type = "track")"#,
            Misread(|e| !is(e, "/type", "track")),
        ),
        (
            r#"match(event, "Product")"#,
            Misread(|e| is(e, "/event", "Product")),
        ),
        (
            r#"match(event, "*rod*")"#,
            Misread(|e| s(e, "/event").is_some_and(|v| v.contains("rod"))),
        ),
        (
            r#"contains(type, "tr")"#,
            Misread(|e| s(e, "/type").is_some_and(|v| v.contains("tr"))),
        ),
        (
            r#"properties.name > "A""#,
            Misread(|e| s(e, "/properties/name").is_some_and(|v| v.as_str() > "A")),
        ),
        (
            "properties.flag != true",
            Misread(|e| e.pointer("/properties/flag") != Some(&json!(true))),
        ),
        (
            "userId != true",
            Misread(|e| e.pointer("/userId") != Some(&json!(true))),
        ),
        (
            "properties.total = 5e2",
            Misread(|e| e.pointer("/properties/total").and_then(Value::as_f64) == Some(500.0)),
        ),
        (
            r#"properties.0 = "zero key""#,
            Misread(|e| is(e, "/properties/0", "zero key")),
        ),
        (
            r#"properties.list.0.a = "first""#,
            Misread(|e| is(e, "/properties/list/0/a", "first")),
        ),
        (
            "properties.and = 1",
            Misread(|e| e.pointer("/properties/and") == Some(&json!(1))),
        ),
        (
            r"properties.a\.b = 1",
            Misread(|e| e.pointer("/properties/a.b") == Some(&json!(1))),
        ),
        (
            "properties.constructor != null",
            Misread(|e| {
                e.pointer("/properties/constructor")
                    .is_some_and(|v| !v.is_null())
            }),
        ),
        (
            r#"properties.list[0].a = "first""#,
            Misread(|e| is(e, "/properties/list/0/a", "first")),
        ),
        ("type = \"track\"\r", Misread(|e| is(e, "/type", "track"))),
        // A string followed directly by a conjunction (found by an outside check).
        (
            r#"type="track"and event="Product Added""#,
            Misread(|e| is(e, "/type", "track") && is(e, "/event", "Product Added")),
        ),
        (
            r#"type = "track"or event = "null""#,
            Misread(|e| is(e, "/type", "track") || is(e, "/event", "null")),
        ),
        (
            r#"event = "Home" or type="page"or type="identify""#,
            Misread(|e| {
                is(e, "/event", "Home") || is(e, "/type", "page") || is(e, "/type", "identify")
            }),
        ),
        (
            r#"event = "Order Completed"and properties.total > 1"#,
            Misread(|e| is(e, "/event", "Order Completed")),
        ),
        (r#"type = "track")"#, Unclear),
        (r#"(type = "track")"#, Same),
        (r#"contains(event, "Product"), type = "track""#, Unclear),
        // Conditions with no single obvious reading.
        ("type = ", Unclear),
        ("type =", Unclear),
        (r#"type = "track" and"#, Unclear),
        (r#"or type = "track""#, Unclear),
        (r#"type = "track" type = "page""#, Unclear),
        ("event = Foo", Unclear),
        ("properties.x = 5abc", Unclear),
        ("properties.price > true", Unclear),
        ("contains(event, null)", Unclear),
        ("", Unclear),
        ("type", Unclear),
    ]
}

#[test]
fn conditions_read_as_segment_reads_them() {
    let events = events();
    let rows = table();
    let conditions: Vec<String> = rows.iter().map(|(c, _)| (*c).to_owned()).collect();
    let Some(answers) = segment(&conditions, &events) else {
        return;
    };
    for ((condition, row), seg) in rows.iter().zip(answers) {
        let ours = switchyard(condition, &events);
        match (row, ours) {
            (Row::Same, Ok(ours)) => assert_eq!(
                ours, seg.results,
                "{condition:?}: Switchyard and Segment disagree; Segment read {}",
                seg.ast
            ),
            (Row::Same, Err(e)) => panic!("{condition:?} should be accepted: {e}"),
            (_, Ok(_)) => panic!(
                "{condition:?} should be refused: Segment reads it as {}",
                seg.ast
            ),
            (Row::Misread(obvious), Err(_)) => {
                let obvious: Vec<bool> = events.iter().map(obvious).collect();
                // A Segment parse error matches nothing, so it differs only if some event
                // matches the obvious reading.
                let differs = match seg.error {
                    Some(_) => obvious.iter().any(|o| *o),
                    None => seg.results != obvious,
                };
                assert!(
                    differs,
                    "{condition:?} is refused but Segment reads it the obvious way: {} {:?}",
                    seg.ast, seg.error
                );
            }
            (Row::Unclear, Err(_)) => {}
        }
    }
}
