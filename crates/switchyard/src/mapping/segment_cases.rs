//! Mapping-kit edge cases whose expected values were observed by running Segment's own
//! `transform` from `@segment/actions-core` 3.170.0 (issue 11 items 3–6). The same cases run
//! against the real package in `tests/oracle/mapping.rs` when node is installed.

use serde_json::{Value, json};

use super::*;

fn run(mapping: Value, event: Value) -> Result<Option<Value>, String> {
    Mapping::compile(mapping)
        .map_err(|e| e.to_string())?
        .evaluate(&event)
        .map_err(|e| e.to_string())
}

fn ok(mapping: Value, event: Value) -> Value {
    run(mapping.clone(), event)
        .unwrap_or_else(|e| panic!("{mapping}: {e}"))
        .unwrap_or(Value::Null)
}

#[test]
fn array_path_uses_a_directives_value_as_the_array() {
    let e = json!({"p": [{"v": 1}, {"v": 2}], "q": {"v": 3}, "s": "p"});
    let shape = json!({"x": {"@path": "$.v"}});
    assert_eq!(
        ok(
            json!({"a": {"@arrayPath": [{"@path": "$.p"}, shape]}}),
            e.clone()
        ),
        json!({"a": [{"x": 1}, {"x": 2}]})
    );
    let cond = json!({"@if": {"exists": {"@path": "$.none"}, "then": {"@path": "$.p"}, "else": {"@path": "$.q"}}});
    assert_eq!(
        ok(json!({"a": {"@arrayPath": [cond, shape]}}), e.clone()),
        json!({"a": [{"x": 3}]})
    );
    // A directive yielding a string gives that string; it is not looked up again.
    assert_eq!(
        ok(json!({"a": {"@arrayPath": [{"@path": "$.s"}]}}), e.clone()),
        json!({"a": "p"})
    );
    assert_eq!(
        ok(
            json!({"a": {"@arrayPath": [{"@path": "$.s"}, shape]}}),
            e.clone()
        ),
        json!({"a": "p"})
    );
    // A string path is still a path.
    assert_eq!(
        ok(json!({"a": {"@arrayPath": ["$.p", shape]}}), e),
        json!({"a": [{"x": 1}, {"x": 2}]})
    );
}

#[test]
fn case_without_value_drops_the_key() {
    assert_eq!(
        ok(
            json!({"a": {"@case": {"operator": "lower"}}, "b": 1}),
            json!({})
        ),
        json!({"b": 1})
    );
    // Segment's runtime still requires the operator.
    assert!(run(json!({"a": {"@case": {"value": "x"}}}), json!({})).is_err());
}

#[test]
fn flatten_edge_cases() {
    let flat = |value: Value, omit: bool| {
        let m =
            json!({"@flatten": {"value": {"@path": "$.v"}, "separator": ".", "omitArrays": omit}});
        ok(m, json!({"v": value}))
    };
    // omitArrays on a top-level array keeps it whole under "".
    assert_eq!(flat(json!([1, {"b": 2}]), true), json!({"": [1, {"b": 2}]}));
    assert_eq!(flat(json!([1, {"b": 2}]), false), json!({"0": 1, "1.b": 2}));
    // An empty key adds no separator at the top, and one after a prefix.
    assert_eq!(
        flat(json!({"": 1, "x": {"": 2, "y": {"": 3}}}), false),
        json!({"": 1, "x.": 2, "x.y.": 3})
    );
    assert_eq!(
        flat(json!({"": {"": 1, "k": 2}, "z": [], "e": {}}), false),
        json!({"": 1, "k": 2})
    );
    assert_eq!(
        flat(json!({"z": [], "l": [1, {"m": 2}], "n": null}), true),
        json!({"z": [], "l": [1, {"m": 2}], "n": null})
    );
    assert_eq!(flat(Value::Null, false), json!({"": null}));
    // An empty separator is an error at Segment's run time.
    let empty = json!({"@flatten": {"value": {"@path": "$.v"}, "separator": ""}});
    assert!(run(empty, json!({})).unwrap_err().contains("separator"));
}

#[test]
fn internal_root_directive_is_expanded_or_refused() {
    let m = json!({
        "__segment_internal_directive": {"@transform": {"apply": {"x": {"@path": "$.a"}}, "mapping": {"old": 1}}},
        "y": {"@path": "$.x"}
    });
    assert_eq!(ok(m, json!({"a": 5})), json!({"y": 5}));
    let two =
        json!({"__segment_internal_directive": {"@transform": {"apply": {}}, "@path": "$.a"}});
    assert!(
        run(two, json!({}))
            .unwrap_err()
            .contains("single directive")
    );
    let other = json!({"__segment_internal_directive": {"@if": {"exists": 1, "then": 2}}, "y": 1});
    assert!(
        run(other, json!({}))
            .unwrap_err()
            .contains("only @transform")
    );
    let nested = json!({"a": {"__segment_internal_directive": {"@path": "$.a"}}});
    let e = run(nested, json!({"a": 1})).unwrap_err();
    assert!(
        e.starts_with("a.__segment_internal_directive:") && e.contains("root"),
        "{e}"
    );
}

#[test]
fn replace_of_an_empty_literal_is_undefined() {
    let m = json!({"a": {"@replace": {"value": "", "pattern": "x"}}, "b": 1});
    assert_eq!(ok(m, json!({})), json!({"b": 1}));
}
