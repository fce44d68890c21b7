use serde_json::{Value, json};

use super::*;

fn event() -> Value {
    json!({
        "type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": null,
        "properties": {"total": 27.5, "currency": "usd", "coupon": "", "zero": 0, "flag": false, "nothing": null,
                       "products": [{"sku": "A", "price": 10}, {"sku": "B", "price": 17.5}],
                       "address": {"city": "Oslo", "geo": {"lat": 59.9}}, "tags": ["x", "y"], "raw": "{\"a\":1}"},
        "traits": {"email": "Ann@Example.com", "plan": null},
        "context": {"ip": "203.0.113.7"}
    })
}

fn run(mapping: Value) -> Option<Value> {
    Mapping::compile(mapping.clone())
        .unwrap_or_else(|e| panic!("{mapping} should compile: {e}"))
        .evaluate(&event())
        .unwrap()
}

fn invalid(mapping: Value) -> String {
    Mapping::compile(mapping.clone())
        .expect_err(&format!("{mapping} should be rejected"))
        .to_string()
}

#[test]
fn raw_values_and_undefined_removal() {
    let out = run(
        json!({"a": 1, "b": {"@path": "$.missing"}, "c": [{"@path": "$.missing"}, 2], "d": null, "e": ""}),
    );
    assert_eq!(
        out,
        Some(json!({"a": 1, "c": [null, 2], "d": null, "e": ""}))
    );
    assert_eq!(
        run(json!({"@path": "$."})),
        Some(event()),
        "the default data mapping is the whole event"
    );
}

#[test]
fn path() {
    assert_eq!(
        run(json!({"@path": "$.properties.products[1].sku"})),
        Some(json!("B"))
    );
    assert_eq!(
        run(json!({"@path": "properties.address.city"})),
        Some(json!("Oslo"))
    );
    assert_eq!(
        run(json!({"@path": {"@template": "$.properties.{{properties.currency}}"}})),
        None
    );
    assert_eq!(
        run(json!({"@path": {"@literal": "$.userId"}})),
        Some(json!("u1")),
        "arguments are resolved first"
    );
    assert_eq!(
        run(json!({"x": {"@path": "$.anonymousId"}})),
        Some(json!({"x": null})),
        "null is kept"
    );
}

#[test]
fn template() {
    let t = |s: &str| run(json!({"@template": s}));
    assert_eq!(
        t("Hi {{traits.email}}!"),
        Some(json!("Hi Ann@Example.com!"))
    );
    assert_eq!(
        t("{{{ properties.total }}} {{properties.currency}}"),
        Some(json!("27.5 usd"))
    );
    assert_eq!(
        t("[{{properties.missing}}][{{traits.plan}}]"),
        Some(json!("[][]")),
        "missing and null render empty"
    );
    assert_eq!(
        t("{{properties.tags}}|{{properties.address}}|{{properties.flag}}"),
        Some(json!("x,y|[object Object]|false"))
    );
    assert_eq!(
        t("{{$.userId}}"),
        Some(json!("")),
        "templates do not strip $."
    );
    assert_eq!(
        t("<b>{{traits.email}}</b> {{ unclosed"),
        Some(json!("<b>Ann@Example.com</b> {{ unclosed")),
        "no HTML escaping"
    );
}

#[test]
fn literal_and_if() {
    assert_eq!(
        run(json!({"@literal": "{{userId}}"})),
        Some(json!("{{userId}}"))
    );
    let iff = |cond: Value| run(json!({"@if": cond}));
    assert_eq!(
        iff(json!({"exists": {"@path": "$.properties.coupon"}, "then": "yes", "else": "no"})),
        Some(json!("yes")),
        "\"\" exists"
    );
    assert_eq!(
        iff(json!({"exists": {"@path": "$.properties.nothing"}, "then": "yes", "else": "no"})),
        Some(json!("no"))
    );
    assert_eq!(
        iff(json!({"blank": {"@path": "$.properties.coupon"}, "then": "yes", "else": "no"})),
        Some(json!("no")),
        "\"\" is blank"
    );
    assert_eq!(
        iff(json!({"blank": {"@path": "$.properties.zero"}, "then": "yes", "else": "no"})),
        Some(json!("no")),
        "0 is blank"
    );
    assert_eq!(
        iff(json!({"blank": {"@path": "$.properties.currency"}, "then": "yes"})),
        Some(json!("yes"))
    );
    assert_eq!(
        iff(json!({"exists": {"@path": "$.nope"}, "then": "yes", "else": false})),
        None,
        "a falsy else is undefined"
    );
    assert_eq!(
        iff(json!({"exists": {"@path": "$.nope"}, "then": "yes"})),
        None
    );
    assert!(
        invalid(json!({"@if": {"exists": false, "then": 1}})).contains("exists key or a blank key")
    );
    assert!(invalid(json!({"@if": {"then": 1}})).contains("exists key or a blank key"));
}

#[test]
fn case_and_replace() {
    assert_eq!(
        run(json!({"@case": {"operator": "lower", "value": {"@path": "$.traits.email"}}})),
        Some(json!("ann@example.com"))
    );
    assert_eq!(
        run(json!({"@case": {"operator": "upper", "value": {"@path": "$.properties.currency"}}})),
        Some(json!("USD"))
    );
    assert_eq!(
        run(json!({"@case": {"operator": "upper", "value": {"@path": "$.properties.total"}}})),
        Some(json!(27.5)),
        "non-strings unchanged"
    );
    assert_eq!(
        run(json!({"@case": {"operator": "upper", "value": ""}})),
        None,
        "a falsy raw value is undefined"
    );
    assert!(invalid(json!({"@case": {"operator": "title", "value": "x"}})).contains("lower"));
    let r = |extra: Value| {
        let mut arg = json!({"value": "a-b-A-b"});
        arg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        run(json!({"@replace": arg}))
    };
    assert_eq!(
        r(json!({"pattern": "-"})),
        Some(json!("abAb")),
        "global by default, replacement defaults to \"\""
    );
    assert_eq!(
        r(json!({"pattern": "-", "replacement": "+", "global": false})),
        Some(json!("a+b-A-b"))
    );
    assert_eq!(
        r(json!({"pattern": "a", "replacement": "x", "ignorecase": true})),
        Some(json!("x-b-x-b"))
    );
    assert_eq!(
        r(json!({"pattern": "a", "replacement": "$&$&", "pattern2": "b", "replacement2": "B"})),
        Some(json!("$&$&-B-A-B")),
        "replacements are literal"
    );
    assert_eq!(
        run(json!({"@replace": {"value": {"@path": "$.properties.total"}, "pattern": "."}})),
        Some(json!("275")),
        "numbers are stringified"
    );
    assert_eq!(
        run(json!({"@replace": {"value": {"@path": "$.properties.address"}, "pattern": "."}})),
        Some(json!("")),
        "objects become \"\""
    );
    assert!(
        invalid(json!({"@replace": {"value": "x", "pattern": "12345678901"}})).contains("1 to 10")
    );
    assert!(
        invalid(json!({"@replace": {"value": "x", "pattern": "😀😀😀😀😀😀"}})).contains("1 to 10"),
        "limits count UTF-16 units"
    );
}

#[test]
fn array_path() {
    let out = run(
        json!({"@arrayPath": ["$.properties.products", {"id": {"@path": "$.sku"}, "cost": {"@path": "$.price"}}]}),
    );
    assert_eq!(
        out,
        Some(json!([{"id": "A", "cost": 10}, {"id": "B", "cost": 17.5}]))
    );
    let obj = run(json!({"@arrayPath": ["$.properties.address", {"c": {"@path": "$.city"}}]}));
    assert_eq!(
        obj,
        Some(json!([{"c": "Oslo"}])),
        "an object root is arrified"
    );
    assert_eq!(
        run(json!({"@arrayPath": ["$.properties.tags"]})),
        Some(json!(["x", "y"]))
    );
    assert_eq!(
        run(json!({"@arrayPath": ["$.properties.currency", {"a": 1}]})),
        Some(json!("usd")),
        "a primitive root is returned"
    );
}

#[test]
fn json_flatten_merge_transform_exclude() {
    assert_eq!(
        run(json!({"@json": {"mode": "encode", "value": {"@path": "$.properties.tags"}}})),
        Some(json!("[\"x\",\"y\"]"))
    );
    assert_eq!(
        run(json!({"@json": {"mode": "decode", "value": {"@path": "$.properties.raw"}}})),
        Some(json!({"a": 1}))
    );
    assert_eq!(
        run(json!({"@json": {"mode": "decode", "value": {"@path": "$.properties.currency"}}})),
        Some(json!("usd")),
        "invalid JSON stays a string"
    );
    assert!(invalid(json!({"@json": {"mode": "ENCODE", "value": "x"}})).contains("lower case"));
    assert!(invalid(json!({"@json": {"mode": "encode", "value": 0}})).contains("falsy"));
    let flat =
        run(json!({"@flatten": {"value": {"@path": "$.properties.address"}, "separator": "_"}}));
    assert_eq!(flat, Some(json!({"city": "Oslo", "geo_lat": 59.9})));
    let flat = run(json!({"@flatten": {"value": {"a": [1, {"b": 2}]}, "separator": "."}}));
    assert_eq!(flat, Some(json!({"a.0": 1, "a.1.b": 2})));
    let flat = run(
        json!({"@flatten": {"value": {"a": [1], "b": {"c": 1}}, "separator": ".", "omitArrays": true}}),
    );
    assert_eq!(flat, Some(json!({"a": [1], "b.c": 1})));
    assert_eq!(
        run(json!({"@flatten": {"value": {"@path": "$.nope"}, "separator": "."}})),
        Some(json!({}))
    );
    assert_eq!(
        run(json!({"@flatten": {"value": 5, "separator": "."}})),
        Some(json!({"": 5}))
    );
    let objs =
        json!([{"a": 1, "b": 1}, {"b": 2, "c": {"@path": "$.nope"}}, {"@path": "$.context"}]);
    assert_eq!(
        run(json!({"@merge": {"objects": objs, "direction": "right"}})),
        Some(json!({"a": 1, "b": 2, "ip": "203.0.113.7"}))
    );
    assert_eq!(
        run(json!({"@merge": {"objects": objs, "direction": "left"}})),
        Some(json!({"ip": "203.0.113.7", "b": 1, "a": 1}))
    );
    let removes = json!([{"a": 1}, {"a": {"@path": "$.nope"}}]);
    assert_eq!(
        run(json!({"@merge": {"objects": removes, "direction": "right"}})),
        Some(json!({})),
        "an undefined later key removes it"
    );
    assert!(invalid(json!({"@merge": {"objects": [{"a": 1}]}})).contains("direction"));
    let tr = json!({"@transform": {"apply": {"n": {"@path": "$.properties.total"}}, "mapping": {"doubled": {"@template": "{{n}}!"}}}});
    assert_eq!(run(tr), Some(json!({"doubled": "27.5!"})));
    assert_eq!(
        run(json!({"@excludeWhenNull": {"@path": "$.anonymousId"}})),
        None
    );
    assert_eq!(
        run(json!({"@excludeWhenNull": {"@path": "$.traits"}})),
        Some(json!({"email": "Ann@Example.com"}))
    );
}

#[test]
fn structural_validation_has_paths() {
    assert!(
        invalid(json!({"to": {"@path": "$.x", "other": 1}}))
            .starts_with("to: a directive (@path) must be the only key")
    );
    assert!(
        invalid(json!({"a": [{"b": {"@nope": 1}}]})).starts_with("a[0].b.@nope: unknown directive")
    );
    assert!(invalid(json!({"@liquid": "{{ x }}"})).contains("not supported"));
    assert!(invalid(json!({"@path": 5})).contains("string or a directive"));
    assert!(invalid(json!({"@arrayPath": []})).contains("[path]"));
    assert!(invalid(json!({"@flatten": {"value": 1}})).contains("separator"));
    assert!(invalid(json!({"@transform": {"apply": {}}})).contains("mapping"));
    // `_metadata` beside a directive is allowed.
    assert_eq!(
        run(json!({"@path": "$.userId", "_metadata": {"label": "x"}})),
        Some(json!("u1"))
    );
    // The input must be an object.
    let m = Mapping::compile(json!({"@path": "$."})).unwrap();
    assert!(m.evaluate(&json!([1])).is_err());
}

proptest::proptest! {
    #[test]
    fn templates_never_panic(t in "[ -~]{0,40}") {
        let _ = run(json!({"@template": t}));
    }
}
