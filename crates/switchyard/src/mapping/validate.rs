//! Mapping validation before anything runs (docs/mappings.md#mapping-kit), with our stricter
//! choices (docs/divergences.md, "Mapping-kit"): we also look inside arrays, enum values are
//! case-sensitive, `@merge.direction` is required, and `@liquid` is refused.

use serde_json::{Map, Value};

use super::MappingError;

pub const DIRECTIVES: [&str; 13] = [
    "@path",
    "@template",
    "@literal",
    "@if",
    "@case",
    "@replace",
    "@arrayPath",
    "@json",
    "@flatten",
    "@merge",
    "@transform",
    "@excludeWhenNull",
    "@liquid",
];

/// The directive of an object: its one `@` key (other keys may only be `_metadata`).
pub fn directive_of(obj: &Map<String, Value>) -> Option<(&str, &Value)> {
    let mut at = obj.iter().filter(|(k, _)| k.starts_with('@'));
    let (name, arg) = at.next()?;
    let only = at.next().is_none() && obj.keys().all(|k| k == name || k == "_metadata");
    only.then_some((name.as_str(), arg))
}

pub fn validate(v: &Value, path: &str) -> Result<(), MappingError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| validate(x, &format!("{path}[{i}]"))),
        Value::Object(obj) => {
            let at_keys: Vec<&String> = obj.keys().filter(|k| k.starts_with('@')).collect();
            if at_keys.is_empty() {
                return obj
                    .iter()
                    .try_for_each(|(k, x)| validate(x, &join(path, k)));
            }
            let Some((name, arg)) = directive_of(obj) else {
                return Err(err(
                    path,
                    format!(
                        "a directive ({}) must be the only key of its object",
                        at_keys[0]
                    ),
                ));
            };
            directive(name, arg, &join(path, name))
        }
        _ => Ok(()),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn err(path: &str, msg: impl Into<String>) -> MappingError {
    MappingError {
        path: path.to_owned(),
        message: msg.into(),
    }
}

fn is_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|o| directive_of(o).is_some())
}

fn string_or_directive(v: Option<&Value>, path: &str, what: &str) -> Result<(), MappingError> {
    match v {
        Some(Value::String(_)) => Ok(()),
        Some(d) if is_directive(d) => validate(d, path),
        _ => Err(err(path, format!("{what} must be a string or a directive"))),
    }
}

fn object_arg<'a>(
    arg: &'a Value,
    path: &str,
    keys: &[&str],
) -> Result<&'a Map<String, Value>, MappingError> {
    let obj = arg
        .as_object()
        .ok_or_else(|| err(path, "takes an object"))?;
    if let Some(k) = obj.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(err(
            path,
            format!("unknown key {k:?}; expected {}", keys.join(", ")),
        ));
    }
    Ok(obj)
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn directive(name: &str, arg: &Value, path: &str) -> Result<(), MappingError> {
    let sub = |k: &str| format!("{path}.{k}");
    match name {
        "@path" | "@template" => string_or_directive(Some(arg), path, name),
        "@literal" | "@excludeWhenNull" => validate(arg, path),
        "@liquid" => Err(err(
            path,
            "not supported by Switchyard; use @template, @if and @case",
        )),
        "@if" => {
            let o = object_arg(arg, path, &["exists", "blank", "then", "else"])?;
            let cond = o.get("exists").or_else(|| o.get("blank"));
            match cond {
                None => return Err(err(path, "@if requires an exists key or a blank key")),
                Some(c) if super::path::is_falsy(c) => {
                    return Err(err(
                        path,
                        "@if requires an exists key or a blank key (a falsy literal is not one)",
                    ));
                }
                Some(_) => {}
            }
            o.iter().try_for_each(|(k, v)| validate(v, &sub(k)))
        }
        "@case" => {
            let o = object_arg(arg, path, &["operator", "value"])?;
            match o.get("operator").and_then(Value::as_str) {
                Some("lower" | "upper") => {}
                _ => return Err(err(&sub("operator"), "must be \"lower\" or \"upper\"")),
            }
            // Without `value`, @case resolves to nothing (the key is dropped), as in Segment.
            match o.get("value") {
                None => Ok(()),
                v => string_or_directive(v, &sub("value"), "value"),
            }
        }
        "@replace" => replace(arg, path),
        "@arrayPath" => {
            let items = arg
                .as_array()
                .filter(|a| (1..=2).contains(&a.len()))
                .ok_or_else(|| err(path, "takes [path] or [path, itemShape]"))?;
            string_or_directive(items.first(), &format!("{path}[0]"), "the path")?;
            match items.get(1) {
                None => Ok(()),
                Some(shape @ Value::Object(_)) => validate(shape, &format!("{path}[1]")),
                Some(_) => Err(err(
                    &format!("{path}[1]"),
                    "the item shape must be an object",
                )),
            }
        }
        "@json" => {
            let o = object_arg(arg, path, &["mode", "value"])?;
            match o.get("mode").and_then(Value::as_str) {
                Some("encode" | "decode") => {}
                _ => {
                    return Err(err(
                        &sub("mode"),
                        "must be \"encode\" or \"decode\" (lower case)",
                    ));
                }
            }
            match o.get("value") {
                None => Err(err(&sub("value"), "is required")),
                Some(v) if super::path::is_falsy(v) => {
                    Err(err(&sub("value"), "must not be a falsy literal"))
                }
                Some(v) => validate(v, &sub("value")),
            }
        }
        "@flatten" => {
            let o = object_arg(arg, path, &["value", "separator", "omitArrays"])?;
            let value = o
                .get("value")
                .ok_or_else(|| err(&sub("value"), "is required"))?;
            validate(value, &sub("value"))?;
            // Segment's runtime refuses a missing or empty separator.
            if o.get("separator")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(err(&sub("separator"), "must be a non-empty string"));
            }
            match o.get("omitArrays") {
                None | Some(Value::Bool(_)) => Ok(()),
                Some(_) => Err(err(&sub("omitArrays"), "must be true or false")),
            }
        }
        "@merge" => {
            let o = object_arg(arg, path, &["objects", "direction"])?;
            let objects = o
                .get("objects")
                .and_then(Value::as_array)
                .ok_or_else(|| err(&sub("objects"), "must be an array"))?;
            for (i, x) in objects.iter().enumerate() {
                if !(x.is_object()) {
                    return Err(err(
                        &format!("{path}.objects[{i}]"),
                        "must be an object or a directive",
                    ));
                }
                validate(x, &format!("{path}.objects[{i}]"))?;
            }
            match o.get("direction").and_then(Value::as_str) {
                Some("left" | "right") => Ok(()),
                _ => Err(err(
                    &sub("direction"),
                    "must be \"left\" or \"right\" (Segment's runtime needs it)",
                )),
            }
        }
        "@transform" => {
            let o = object_arg(arg, path, &["apply", "mapping"])?;
            for k in ["apply", "mapping"] {
                match o.get(k) {
                    Some(v @ Value::Object(_)) => validate(v, &sub(k))?,
                    _ => {
                        return Err(err(
                            &sub(k),
                            "is required and must be an object or a directive",
                        ));
                    }
                }
            }
            Ok(())
        }
        other => Err(err(
            path,
            format!(
                "unknown directive {other}; expected one of {}",
                DIRECTIVES[..12].join(", ")
            ),
        )),
    }
}

fn replace(arg: &Value, path: &str) -> Result<(), MappingError> {
    let keys = [
        "value",
        "pattern",
        "replacement",
        "pattern2",
        "replacement2",
        "ignorecase",
        "global",
    ];
    let o = object_arg(arg, path, &keys)?;
    let sub = |k: &str| format!("{path}.{k}");
    string_or_directive(o.get("value"), &sub("value"), "value")?;
    for (k, required, min) in [
        ("pattern", true, 1),
        ("replacement", false, 0),
        ("pattern2", false, 1),
        ("replacement2", false, 0),
    ] {
        match o.get(k) {
            None if !required => {}
            Some(Value::String(s)) if (min..=10).contains(&utf16_len(s)) => {}
            _ => {
                return Err(err(
                    &sub(k),
                    format!("must be a string of {min} to 10 characters"),
                ));
            }
        }
    }
    for k in ["ignorecase", "global"] {
        if o.get(k).is_some_and(|v| !v.is_boolean()) {
            return Err(err(&sub(k), "must be true or false"));
        }
    }
    Ok(())
}
