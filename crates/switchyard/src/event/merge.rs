//! Deep merge of the batch envelope's `context` / `integrations` into an element's own
//! (docs/wire.md#batch-envelope): a deep merge, the element wins on conflict.

use serde_json::Value;

/// Merges `element` over `envelope`: objects merge key by key, recursively; for anything
/// else the element's value wins.
pub fn deep_merge(envelope: Value, element: Value) -> Value {
    match (envelope, element) {
        (Value::Object(mut base), Value::Object(over)) => {
            for (k, v) in over {
                let merged = match base.shift_remove(&k) {
                    Some(b) => deep_merge(b, v),
                    None => v,
                };
                base.insert(k, merged);
            }
            Value::Object(base)
        }
        (_, element) => element,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn element_wins_and_objects_merge() {
        let envelope =
            json!({"library": {"name": "x", "version": "1"}, "ip": "1.2.3.4", "locale": "en"});
        let element = json!({"library": {"version": "2"}, "ip": null, "page": {"path": "/"}});
        let merged = deep_merge(envelope, element);
        assert_eq!(
            merged,
            json!({"library": {"name": "x", "version": "2"}, "ip": null, "locale": "en", "page": {"path": "/"}})
        );
    }

    #[test]
    fn non_object_element_replaces() {
        assert_eq!(deep_merge(json!({"a": 1}), json!(5)), json!(5));
        assert_eq!(deep_merge(json!(5), json!({"a": 1})), json!({"a": 1}));
    }
}
