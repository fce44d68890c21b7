//! Resolving a validated mapping against an input (docs/mappings.md#directives). `None` is
//! JavaScript's `undefined`: dropped from objects, a `null` hole in arrays.

use serde_json::{Map, Value};

use super::MappingError;
use super::path::{get_path, get_template, is_falsy, js_string};
use super::validate::directive_of;

type Out = Result<Option<Value>, MappingError>;

pub fn resolve(m: &Value, input: &Value) -> Out {
    match m {
        Value::Object(obj) => match directive_of(obj) {
            Some((name, arg)) => directive(name, arg, input),
            None => Ok(Some(Value::Object(
                resolve_object(obj, input)?
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect(),
            ))),
        },
        Value::Array(items) => {
            let out: Result<Vec<Value>, MappingError> = items
                .iter()
                .map(|x| Ok(resolve(x, input)?.unwrap_or(Value::Null)))
                .collect();
            Ok(Some(Value::Array(out?)))
        }
        other => Ok(Some(other.clone())),
    }
}

/// Resolves each key, keeping undefined ones (`@merge` needs them).
fn resolve_object(
    obj: &Map<String, Value>,
    input: &Value,
) -> Result<Vec<(String, Option<Value>)>, MappingError> {
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), resolve(v, input)?)))
        .collect()
}

fn fail(name: &str, msg: impl Into<String>) -> MappingError {
    MappingError {
        path: name.to_owned(),
        message: msg.into(),
    }
}

fn arg<'a>(a: &'a Value, key: &str) -> Option<&'a Value> {
    a.get(key)
}

fn directive(name: &str, a: &Value, input: &Value) -> Out {
    match name {
        "@path" => match resolve(a, input)? {
            Some(Value::String(p)) => Ok(get_path(input, &p)),
            _ => Err(fail(name, "the path did not resolve to a string")),
        },
        "@template" => match resolve(a, input)? {
            Some(Value::String(t)) => Ok(Some(Value::String(template(&t, input)))),
            _ => Err(fail(name, "the template did not resolve to a string")),
        },
        "@literal" => resolve(a, input),
        "@if" => if_directive(a, input),
        "@case" => {
            if arg(a, "value").is_none_or(is_falsy) {
                return Ok(None);
            }
            let v = resolve(&a["value"], input)?;
            Ok(match (v, arg(a, "operator").and_then(Value::as_str)) {
                (Some(Value::String(s)), Some("lower")) => Some(Value::String(s.to_lowercase())),
                (Some(Value::String(s)), Some("upper")) => Some(Value::String(s.to_uppercase())),
                (v, _) => v,
            })
        }
        // Segment skips the replacement (undefined) when `value` is a falsy literal ("").
        "@replace" if arg(a, "value").is_none_or(is_falsy) => Ok(None),
        "@replace" => replace(a, input).map(|s| Some(Value::String(s))),
        "@arrayPath" => array_path(a, input),
        "@json" => {
            let v = resolve(&a["value"], input)?;
            Ok(match (arg(a, "mode").and_then(Value::as_str), v) {
                (Some("encode"), Some(v)) => Some(Value::String(v.to_string())),
                (Some("decode"), Some(Value::String(s))) => {
                    Some(serde_json::from_str(&s).unwrap_or(Value::String(s)))
                }
                (_, v) => v,
            })
        }
        "@flatten" => {
            let sep = arg(a, "separator").and_then(Value::as_str).unwrap_or(".");
            let omit = arg(a, "omitArrays")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut out = Map::new();
            if let Some(v) = resolve(&a["value"], input)? {
                flatten(v, "", sep, omit, &mut out);
            }
            Ok(Some(Value::Object(out)))
        }
        "@merge" => merge(a, input),
        "@transform" => {
            let applied = resolve(&a["apply"], input)?.unwrap_or(Value::Null);
            resolve(&a["mapping"], &applied)
        }
        "@excludeWhenNull" => Ok(match resolve(a, input)? {
            Some(Value::Null) | None => None,
            Some(v) => Some(drop_nulls(v)),
        }),
        other => Err(fail(other, "is not supported")),
    }
}

/// `{{ path }}` and `{{{ path }}}`: the value at the path, `""` when missing or null.
fn template(t: &str, input: &Value) -> String {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let (open, close) = if after.starts_with("{{{") {
            (3, "}}}")
        } else {
            (2, "}}")
        };
        let body = &after[open..];
        match body.find('}') {
            Some(end) if body[end..].starts_with(close) => {
                if let Some(v) = get_template(input, body[..end].trim()).filter(|v| !v.is_null()) {
                    out.push_str(&js_string(&v));
                }
                rest = &body[end + close.len()..];
            }
            _ => {
                out.push_str(&after[..open]);
                rest = body;
            }
        }
    }
    out.push_str(rest);
    out
}

fn if_directive(a: &Value, input: &Value) -> Out {
    let cond = if let Some(e) = arg(a, "exists") {
        resolve(e, input)?.is_some_and(|v| !v.is_null())
    } else {
        let v = resolve(arg(a, "blank").unwrap_or(&Value::Null), input)?;
        v.is_some_and(|v| !v.is_null() && !loosely_empty(&v))
    };
    match (cond, arg(a, "then"), arg(a, "else")) {
        (true, Some(t), _) => resolve(t, input),
        (false, _, Some(e)) if !is_falsy(e) => resolve(e, input),
        _ => Ok(None),
    }
}

/// JavaScript's `v == ""`.
fn loosely_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Array(_) => js_string(v).is_empty(),
        Value::Null | Value::Object(_) => false,
    }
}

fn replace(a: &Value, input: &Value) -> Result<String, MappingError> {
    let mut s = match resolve(&a["value"], input)? {
        Some(Value::String(s)) => s,
        Some(v @ (Value::Bool(_) | Value::Number(_))) => js_string(&v),
        _ => String::new(),
    };
    let global = arg(a, "global").and_then(Value::as_bool).unwrap_or(true);
    let ignore_case = arg(a, "ignorecase")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (p, r) in [("pattern", "replacement"), ("pattern2", "replacement2")] {
        if let Some(pattern) = arg(a, p).and_then(Value::as_str) {
            let with = arg(a, r).and_then(Value::as_str).unwrap_or("");
            s = replace_literal(&s, pattern, with, global, ignore_case);
        }
    }
    Ok(s)
}

/// Literal (not regex) replacement; the replacement text is used as it is.
fn replace_literal(s: &str, pattern: &str, with: &str, global: bool, ignore_case: bool) -> String {
    if pattern.is_empty() {
        return s.to_owned();
    }
    let (hay, needle) = if ignore_case {
        (s.to_lowercase(), pattern.to_lowercase())
    } else {
        (s.to_owned(), pattern.to_owned())
    };
    if hay.len() != s.len() {
        // Lower-casing changed byte lengths (rare scripts): fall back to exact matching.
        return if global {
            s.replace(pattern, with)
        } else {
            s.replacen(pattern, with, 1)
        };
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (i, _) in hay.match_indices(&needle) {
        out.push_str(&s[last..i]);
        out.push_str(with);
        last = i + needle.len();
        if !global {
            break;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// `[path, itemShape?]`. A string path is looked up; a directive's value *is* the root (a
/// directive that yields a string gives that string, not another lookup), as in Segment.
fn array_path(a: &Value, input: &Value) -> Out {
    let root = match &a[0] {
        Value::String(p) => get_path(input, p),
        directive => resolve(directive, input)?,
    };
    let shape = a
        .get(1)
        .filter(|s| s.as_object().is_some_and(|o| !o.is_empty()));
    match (root, shape) {
        (Some(root @ (Value::Object(_) | Value::Array(_))), Some(shape)) => {
            let items = match root {
                Value::Array(items) => items,
                obj => vec![obj],
            };
            let out: Result<Vec<Value>, MappingError> = items
                .iter()
                .map(|item| Ok(resolve(shape, item)?.unwrap_or(Value::Null)))
                .collect();
            Ok(Some(Value::Array(out?)))
        }
        (root, _) => Ok(root),
    }
}

/// Segment's `flattenObject`: objects (and arrays, unless `omit_arrays`) spread into
/// `prefix<sep>key`; anything else, including a top-level array when `omit_arrays`, is
/// stored under the prefix (`""` at the top). An empty prefix adds no separator, so an
/// empty-string key at the top flattens its children without one.
fn flatten(v: Value, prefix: &str, sep: &str, omit_arrays: bool, out: &mut Map<String, Value>) {
    let entries: Vec<(String, Value)> = match v {
        Value::Object(m) => m.into_iter().collect(),
        Value::Array(a) if !omit_arrays => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        leaf => {
            out.insert(prefix.to_owned(), leaf);
            return;
        }
    };
    for (k, child) in entries {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}{sep}{k}")
        };
        flatten(child, &key, sep, omit_arrays, out);
    }
}

/// `Object.assign` of the resolved objects; `right`: later objects win, `left`: earlier
/// ones. A key that resolves to undefined in a winning object removes the key.
fn merge(a: &Value, input: &Value) -> Out {
    let mut parts: Vec<Vec<(String, Option<Value>)>> = Vec::new();
    for o in arg(a, "objects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match o.as_object() {
            Some(obj) if directive_of(obj).is_none() => parts.push(resolve_object(obj, input)?),
            _ => {
                if let Some(Value::Object(m)) = resolve(o, input)? {
                    parts.push(m.into_iter().map(|(k, v)| (k, Some(v))).collect());
                }
            }
        }
    }
    if arg(a, "direction").and_then(Value::as_str) == Some("left") {
        parts.reverse();
    }
    let mut out = Map::new();
    for (k, v) in parts.into_iter().flatten() {
        match v {
            Some(v) => {
                out.insert(k, v);
            }
            None => {
                out.shift_remove(&k);
            }
        }
    }
    Ok(Some(Value::Object(out)))
}

fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}
