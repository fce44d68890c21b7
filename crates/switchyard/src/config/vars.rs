//! `${ENV_VAR}` substitution inside parsed string scalars (never in keys, never across
//! scalars). `$${` is an escaped, literal `${`. An unset variable is an error naming the
//! config path where it was used.

use serde_yaml_ng::Value;

use super::Problem;

/// Substitutes in place, collecting one problem per unset or malformed reference.
pub fn substitute(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) => match expand(s, lookup) {
            Ok(expanded) => *s = expanded,
            Err(msg) => problems.push(Problem::error(path, msg)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let label = item_label(item).unwrap_or_else(|| i.to_string());
                substitute(item, &format!("{path}[{label}]"), lookup, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                substitute(v, &child, lookup, problems);
            }
        }
        Value::Tagged(t) => substitute(&mut t.value, path, lookup, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The label used for a list item in paths: its `id`, when it has a string one.
pub fn item_label(item: &Value) -> Option<String> {
    item.get("id").and_then(Value::as_str).map(str::to_owned)
}

pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let name = &tail[..end];
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(expand("a-${SECRET}-b", &env).unwrap(), "a-s3cr3t-b");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("$${SECRET}", &env).unwrap(), "${SECRET}");
        assert_eq!(expand("cost: $5", &env).unwrap(), "cost: $5");
        assert!(
            expand("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING is not set")
        );
        assert!(expand("${SECRET", &env).is_err());
        assert!(expand("${bad-name}", &env).is_err());
    }

    #[test]
    fn reports_the_path_of_every_unset_variable() {
        let yaml = "sources:\n  - id: web\n    write_keys: { production: '${A}' }\n  - id: app\n    token: '${B}'\n";
        let mut v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        substitute(&mut v, "", &env, &mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["sources[web].write_keys.production", "sources[app].token"]
        );
    }
}
