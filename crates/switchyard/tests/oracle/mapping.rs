//! Mappings × events, resolved by Segment's mapping-kit (`@segment/actions-core` 3.170.0
//! `transform`) and by Switchyard's `Mapping`: the same payload, or an error in both. The
//! `Stricter` rows are mappings Switchyard refuses at config time where Segment's result
//! would surprise (listed in docs/divergences.md).

use serde_json::{Value, json};
use switchyard::mapping::Mapping;

use crate::node;

enum Row {
    Same,
    Stricter,
}

fn table() -> Vec<(Value, Value, Row)> {
    use Row::*;
    let list = json!({"p": [{"v": 1}, {"v": 2}], "q": {"v": 3}, "s": "p", "n": "MiXed"});
    let shape = json!({"x": {"@path": "$.v"}});
    vec![
        // Item 3: @arrayPath with a directive as its path uses the directive's value.
        (
            json!({"a": {"@arrayPath": [{"@path": "$.p"}, shape]}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": ["$.p", shape]}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": [{"@path": "$.s"}]}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": [{"@path": "$.s"}, shape]}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": [{"@if": {"exists": {"@path": "$.none"}, "then": {"@path": "$.p"}, "else": {"@path": "$.q"}}}, shape]}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": [{"@literal": [{"v": 7}]}, shape]}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": [{"@template": "p"}]}}),
            list.clone(),
            Same,
        ),
        // Item 4: @case without value resolves to nothing.
        (
            json!({"a": {"@case": {"operator": "lower"}}, "b": 1}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@case": {"operator": "upper", "value": {"@path": "$.n"}}}}),
            list.clone(),
            Same,
        ),
        (
            json!({"a": {"@case": {"operator": "upper", "value": ""}}}),
            list.clone(),
            Same,
        ),
        (json!({"a": {"@case": {"value": "x"}}}), list.clone(), Same),
        // Item 5: @flatten edge cases.
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.arr"}, "separator": ".", "omitArrays": true}}}),
            json!({"arr": [1, {"b": 2}]}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.arr"}, "separator": "."}}}),
            json!({"arr": [1, {"b": 2}]}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.o"}, "separator": "."}}}),
            json!({"o": {"": 1, "x": {"": 2, "y": {"": 3}}}}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.o"}, "separator": "_"}}}),
            json!({"o": {"": {"": 1, "k": 2}, "z": [], "e": {}}}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.o"}, "separator": "_", "omitArrays": true}}}),
            json!({"o": {"z": [], "l": [1, {"m": 2}], "n": null}}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.o"}, "separator": "."}}}),
            json!({"o": null}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.o"}, "separator": "."}}}),
            json!({"o": "x"}),
            Same,
        ),
        (
            json!({"a": {"@flatten": {"value": {"@path": "$.o"}, "separator": ""}}}),
            json!({"o": {"b": 1}}),
            Same,
        ),
        // Item 6: the internal root directive.
        (
            json!({"__segment_internal_directive": {"@transform": {"apply": {"x": {"@path": "$.a"}}}}, "y": {"@path": "$.x"}}),
            json!({"a": 5}),
            Same,
        ),
        (
            json!({"__segment_internal_directive": {"@transform": {"apply": {"x": 1}, "mapping": {"old": 1}}}, "y": {"@path": "$.x"}}),
            json!({}),
            Same,
        ),
        (
            json!({"@transform": {"apply": {"__segment_internal_directive": {"@transform": {"apply": {"x": {"@path": "$.a"}}}}, "y": {"@path": "$.x"}}, "mapping": {"z": {"@path": "$.y"}}}}),
            json!({"a": 5}),
            Stricter,
        ),
        (
            json!({"__segment_internal_directive": {"@transform": {"apply": {}}, "@path": "$.a"}, "y": 1}),
            json!({"a": 5}),
            Same,
        ),
        (
            json!({"__segment_internal_directive": {}, "y": 1}),
            json!({}),
            Same,
        ),
        (
            json!({"__segment_internal_directive": "x", "y": 1}),
            json!({}),
            Same,
        ),
        (
            json!({"__segment_internal_directive": {"@if": {"exists": {"@path": "$.a"}, "then": {"k": 1}}}, "y": 2}),
            json!({"a": 1}),
            Stricter,
        ),
        (
            json!({"a": {"__segment_internal_directive": {"@path": "$.a"}}}),
            json!({"a": 1}),
            Stricter,
        ),
        // Neighbours of the changes above.
        (
            json!({"a": {"@template": "{{t}} {{u}} {{v}}"}}),
            json!({"t": 1e-7, "u": 1.0, "v": [1, 2.5]}),
            Same,
        ),
        (
            json!({"a": {"@arrayPath": ["$.p", {"x": 1}, "extra"]}}),
            list.clone(),
            Stricter,
        ),
        (
            json!({"a": {"@replace": {"value": "", "pattern": "x"}}, "b": 1}),
            json!({}),
            Same,
        ),
        (
            json!({"a": {"@replace": {"value": {"@path": "$.s"}, "pattern": "a", "replacement": "b"}}}),
            json!({"s": "banana"}),
            Same,
        ),
        (
            json!({"a": {"@case": {"operator": "title", "value": "x"}}}),
            json!({}),
            Same,
        ),
        (
            json!({"a": {"@case": {"operator": "title", "value": {"@path": "$.n"}}}}),
            json!({"n": 5}),
            Stricter,
        ),
    ]
}

/// Segment's result for each case: `Ok(payload)` or `Err(message)`; `None` skips.
fn segment(cases: &[(Value, Value, Row)]) -> Option<Vec<Result<Value, String>>> {
    let cases: Vec<Value> = cases
        .iter()
        .map(|(m, e, _)| json!({"mapping": m, "event": e}))
        .collect();
    let out = node::run(
        "mapping_oracle.mjs",
        "@segment/actions-core",
        &json!({"cases": cases}),
    )?;
    Some(
        out.as_array()
            .expect("one answer per case")
            .iter()
            .map(|a| match a.get("error").and_then(Value::as_str) {
                Some(e) => Err(e.to_owned()),
                None => Ok(a["ok"].clone()),
            })
            .collect(),
    )
}

fn switchyard(mapping: &Value, event: &Value) -> Result<Value, String> {
    let m = Mapping::compile(mapping.clone()).map_err(|e| e.to_string())?;
    m.evaluate(event)
        .map(|v| v.unwrap_or(Value::Null))
        .map_err(|e| e.to_string())
}

#[test]
fn mappings_resolve_as_segment_resolves_them() {
    let rows = table();
    let Some(answers) = segment(&rows) else {
        return;
    };
    for ((mapping, event, row), seg) in rows.iter().zip(answers) {
        let ours = switchyard(mapping, event);
        match row {
            Row::Same => match (&ours, &seg) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{mapping} on {event}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{mapping} on {event}: Switchyard {ours:?}, Segment {seg:?}"),
            },
            Row::Stricter => assert!(
                ours.is_err(),
                "{mapping} should be refused; Segment gives {seg:?}"
            ),
        }
    }
}
