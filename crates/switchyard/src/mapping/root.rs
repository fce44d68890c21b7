//! Segment's platform-internal root key `__segment_internal_directive` (actions-core 3.170.0
//! `mapping-kit/index.ts` `getMappingToProcess`): at the root of a mapping,
//! `{"__segment_internal_directive": {"@d": {...}}, "k": v, ...}` becomes
//! `{"@d": {..., "mapping": {"k": v, ...}}}`. Only `@transform` uses that `mapping`, so
//! only `@transform` is accepted as `@d`. Anywhere else the key is refused: Segment copies
//! it into the payload as an ordinary field (inside `@transform.apply`, which Segment also
//! expands, its validator refuses it unless the directive already has a `mapping`).

use serde_json::{Map, Value};

use super::MappingError;

pub const ROOT_KEY: &str = "__segment_internal_directive";

fn err(path: &str, message: &str) -> MappingError {
    MappingError {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

/// Expands the root key where Segment honours it and refuses it everywhere else.
pub fn expand(v: Value) -> Result<Value, MappingError> {
    walk(v, true, "")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(v: Value, at_root: bool, path: &str) -> Result<Value, MappingError> {
    match v {
        Value::Object(mut obj) => {
            if obj.contains_key(ROOT_KEY) {
                if !at_root {
                    return Err(err(
                        &join(path, ROOT_KEY),
                        "is Segment's internal root directive: it is only read at the root of a mapping",
                    ));
                }
                obj = rewrite(obj, path)?;
            }
            obj.into_iter()
                .map(|(k, child)| {
                    let child = walk(child, false, &join(path, &k))?;
                    Ok((k, child))
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object)
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, x)| walk(x, false, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

/// The root key's `@transform`, with every other root key as its `mapping`.
fn rewrite(mut obj: Map<String, Value>, path: &str) -> Result<Map<String, Value>, MappingError> {
    let here = join(path, ROOT_KEY);
    let Some(Value::Object(root)) = obj.shift_remove(ROOT_KEY) else {
        return Err(err(&here, "must be an object with one directive"));
    };
    if root.len() != 1 {
        return Err(err(
            &here,
            "the root mapping must only have a single directive object",
        ));
    }
    let (name, directive) = root.into_iter().next().expect("one key");
    if name != "@transform" {
        return Err(err(
            &join(&here, &name),
            "only @transform is supported here: with any other directive Segment ignores the mapping's other keys",
        ));
    }
    let Value::Object(mut directive) = directive else {
        return Err(err(
            &join(&here, &name),
            "the root directive must be an object",
        ));
    };
    directive.insert("mapping".to_owned(), Value::Object(obj));
    let mut out = Map::new();
    out.insert(name, Value::Object(directive));
    Ok(out)
}
