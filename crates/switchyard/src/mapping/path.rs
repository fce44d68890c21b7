//! Path lookup as mapping-kit's `get` does it (docs/mappings.md#paths), and JavaScript's string
//! conversion, which `@template` and `@if` need.

use std::borrow::Cow;

use serde_json::Value;

/// Splits `a.b[0]['c d']` into `a`, `b`, `0`, `c d`: on `.`, on `[` before a quote or digit,
/// on `]` after one; quotes removed; empty segments dropped.
pub fn split(path: &str) -> Vec<String> {
    let chars: Vec<char> = path.chars().collect();
    let quoteish =
        |c: Option<&char>| c.is_some_and(|c| matches!(c, '"' | '\'') || c.is_ascii_digit());
    let mut segs = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = c == '.'
            || (c == '[' && quoteish(chars.get(i + 1)))
            || (c == ']' && i > 0 && quoteish(chars.get(i - 1)));
        if boundary {
            segs.push(std::mem::take(&mut cur));
        } else if c != '"' && c != '\'' {
            cur.push(c);
        }
    }
    segs.push(cur);
    segs.retain(|s| !s.is_empty());
    segs
}

/// `@path` / `@arrayPath` lookup: the first `$.` anywhere is removed; `""` and `.` are the
/// whole input. `None` is JavaScript's `undefined`.
pub fn get_path(input: &Value, path: &str) -> Option<Value> {
    walk(input, &path.replacen("$.", "", 1))
}

/// `@template` lookup: no `$.` stripping (so `{{$.userId}}` is empty, as in Segment).
pub fn get_template(input: &Value, path: &str) -> Option<Value> {
    walk(input, path)
}

fn walk(input: &Value, path: &str) -> Option<Value> {
    if path.is_empty() || path == "." {
        return Some(input.clone());
    }
    js_walk(input, split(path).iter().map(String::as_str)).map(Cow::into_owned)
}

/// JavaScript's `keys.reduce((cur, key) => cur && cur[key], root)` on JSON, which both
/// mapping-kit's and FQL's `get` do: a falsy value on the way is returned as it is
/// (`{a: 0}` + `a.b` → `0`), arrays and strings have a `length`, strings index by UTF-16
/// unit, and only canonical integers (`1`, not `01`) index. `None` is `undefined`.
pub fn js_walk<'a, 'k>(
    root: &'a Value,
    keys: impl IntoIterator<Item = &'k str>,
) -> Option<Cow<'a, Value>> {
    let mut cur = root;
    for key in keys {
        if is_falsy(cur) {
            return Some(Cow::Borrowed(cur));
        }
        let index = key.parse::<usize>().ok().filter(|i| i.to_string() == key);
        cur = match cur {
            Value::Object(m) => m.get(key)?,
            Value::Array(a) if key == "length" => return Some(Cow::Owned(Value::from(a.len()))),
            Value::Array(a) => a.get(index?)?,
            Value::String(s) if key == "length" => {
                return Some(Cow::Owned(Value::from(s.encode_utf16().count())));
            }
            Value::String(s) => {
                let unit = s.encode_utf16().nth(index?)?;
                let c = char::decode_utf16([unit]).next()?.unwrap_or('\u{fffd}');
                return Some(Cow::Owned(Value::String(c.to_string())));
            }
            _ => return None,
        };
    }
    Some(Cow::Borrowed(cur))
}

/// JavaScript falsiness for JSON values.
pub fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// JavaScript's `String(value)`: numbers without a trailing `.0`, arrays joined with `,`
/// (null inside an array becomes empty), objects as `[object Object]`.
pub fn js_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => crate::fql::js_number_string(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                if i.is_null() {
                    String::new()
                } else {
                    js_string(i)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn splitting() {
        assert_eq!(split("a.b[0].c"), ["a", "b", "0", "c"]);
        assert_eq!(split("['a'].b"), ["a", "b"]);
        assert_eq!(split(r#"["a b"].c"#), ["a b", "c"]);
        assert_eq!(split("[txt] non"), ["[txt] non"]);
        assert_eq!(
            split("integrations.Actions Amplitude.session_id"),
            ["integrations", "Actions Amplitude", "session_id"]
        );
    }

    #[test]
    fn lookups() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "zero": 0, "s": "Hello", "$": "dollar", "n": null});
        assert_eq!(get_path(&v, "$.a.b[1].c"), Some(json!(2)));
        assert_eq!(get_path(&v, "a.b.0.c"), Some(json!(1)));
        assert_eq!(get_path(&v, "$."), Some(v.clone()));
        assert_eq!(get_path(&v, ""), Some(v.clone()));
        assert_eq!(get_path(&v, "."), Some(v.clone()));
        assert_eq!(
            get_path(&v, "$"),
            Some(json!("dollar")),
            "a lone $ is a key, not the root"
        );
        assert_eq!(get_path(&v, "a.missing.x"), None);
        assert_eq!(
            get_path(&v, "zero.b"),
            Some(json!(0)),
            "a falsy intermediate is returned as is"
        );
        assert_eq!(get_path(&v, "n.b"), Some(Value::Null));
        assert_eq!(get_path(&v, "s.length"), Some(json!(5)));
        assert_eq!(get_path(&v, "a.b.length"), Some(json!(2)));
        assert_eq!(
            get_path(&v, "x.$.a"),
            None,
            "the first $. is stripped wherever it is"
        );
        assert_eq!(get_template(&v, "$.s"), None, "templates do not strip $.");
    }

    #[test]
    fn js_strings() {
        assert_eq!(js_string(&json!(5)), "5");
        assert_eq!(js_string(&json!(1.0)), "1");
        assert_eq!(js_string(&json!(2.5)), "2.5");
        assert_eq!(js_string(&json!([1, 2, null, "x"])), "1,2,,x");
        assert_eq!(js_string(&json!({"a": 1})), "[object Object]");
        assert_eq!(js_string(&json!(true)), "true");
    }
}
