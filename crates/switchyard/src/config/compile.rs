//! Raw config → validated `Config`. Every problem is collected, each with its path; nothing
//! stops at the first error.

use std::collections::HashSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::raw::*;
use super::units::{parse_duration, parse_size};
use super::vars::{item_label, substitute};
use super::*;
use crate::fql::Fql;

const TOP_LEVEL: [&str; 6] = [
    "server",
    "storage",
    "dedupe",
    "functions",
    "sources",
    "destinations",
];

pub(crate) struct Cx {
    pub(crate) problems: Vec<Problem>,
}

impl Cx {
    pub(crate) fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.problems.push(Problem::error(path, msg));
    }

    /// Deserializes one section, recording a problem (with the full path) for each failure.
    /// After a failure the offending key is removed and the rest is tried again, so one bad
    /// field does not hide the others.
    pub(crate) fn section<T: DeserializeOwned>(
        &mut self,
        value: Option<&Value>,
        path: &str,
    ) -> Option<T> {
        let mut value = value.cloned().unwrap_or(Value::Mapping(Default::default()));
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => {
                    let inner = e.path().to_string();
                    let full = if inner == "." || inner.is_empty() {
                        path.to_owned()
                    } else {
                        format!("{path}.{inner}")
                    };
                    let segments: Vec<_> = e.path().iter().cloned().collect();
                    self.err(full, e.into_inner().to_string());
                    if !remove_at(&mut value, &segments) {
                        return None;
                    }
                }
            }
        }
        None
    }

    pub(crate) fn duration(
        &mut self,
        v: &Option<Scalar>,
        default: Duration,
        path: &str,
    ) -> Duration {
        match v {
            None => default,
            Some(Scalar::Text(t)) => parse_duration(t).unwrap_or_else(|m| {
                self.err(path, m);
                default
            }),
            Some(Scalar::Int(n)) => {
                self.err(
                    path,
                    format!("duration {n} needs a unit, e.g. {n}s or {n}ms"),
                );
                default
            }
        }
    }

    pub(crate) fn size(&mut self, v: &Option<Scalar>, default: u64, path: &str) -> u64 {
        match v {
            None => default,
            Some(Scalar::Int(n)) => *n,
            Some(Scalar::Text(t)) => parse_size(t).unwrap_or_else(|m| {
                self.err(path, m);
                default
            }),
        }
    }
}

/// Removes the value at `path` (as reported by serde_path_to_error); false if not found.
fn remove_at(value: &mut Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index),
            _ => None,
        };
        let Some(n) = next else { return false };
        cur = n;
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(s)) if *index < s.len() => {
            s.remove(*index);
            true
        }
        _ => false,
    }
}

/// Compiles config text. `file` labels YAML syntax errors (`file:line:col`).
pub fn compile_str(
    text: &str,
    file: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Option<Config>, Vec<Problem>) {
    let mut root: Value = match serde_yaml_ng::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) => {
            let path = e.location().map_or_else(
                || file.to_owned(),
                |l| format!("{file}:{}:{}", l.line(), l.column()),
            );
            return (
                None,
                vec![Problem::error(path, format!("invalid YAML: {e}"))],
            );
        }
    };
    let mut cx = Cx {
        problems: Vec::new(),
    };
    let Some(map) = root.as_mapping() else {
        return (
            None,
            vec![Problem::error("", "the config must be a mapping")],
        );
    };
    for key in map.keys() {
        match key.as_str() {
            Some(k) if TOP_LEVEL.contains(&k) => {}
            _ => cx.err(
                key.as_str().unwrap_or("?").to_owned(),
                format!("unknown key; expected one of {}", TOP_LEVEL.join(", ")),
            ),
        }
    }
    substitute(&mut root, "", lookup, &mut cx.problems);
    let server = super::server::compile(&mut cx, root.get("server"));
    let storage = compile_storage(&mut cx, root.get("storage"));
    let dedupe = compile_dedupe(&mut cx, root.get("dedupe"));
    let functions = super::sources::compile_functions(&mut cx, root.get("functions"));
    let (sources, write_keys) =
        super::sources::compile(&mut cx, root.get("sources"), &functions, file);
    let destinations =
        super::destinations::compile(&mut cx, root.get("destinations"), &sources, &server);
    let config = Config {
        server,
        storage,
        dedupe,
        functions,
        sources,
        destinations,
        write_keys,
    };
    let ok = cx.problems.iter().all(|p| p.severity == Severity::Warning);
    (ok.then_some(config), cx.problems)
}

fn compile_storage(cx: &mut Cx, v: Option<&Value>) -> StorageConfig {
    let raw: RawStorage = cx.section(v, "storage").unwrap_or_default();
    match raw.kind.as_deref() {
        None | Some("embedded") => {}
        Some("nats") => cx.err(
            "storage.type",
            "scale-out mode (nats) is not implemented yet; use embedded",
        ),
        Some(other) => cx.err(
            "storage.type",
            format!("unknown storage type {other:?}; expected embedded or nats"),
        ),
    }
    for (key, set) in [
        ("nats", raw.nats.is_some()),
        ("postgres", raw.postgres.is_some()),
    ] {
        if set {
            cx.problems.push(Problem::warning(
                format!("storage.{key}"),
                "ignored: only used when storage.type is nats",
            ));
        }
    }
    let retention = raw.retention.unwrap_or_default();
    let max_profiles = raw.max_profiles.unwrap_or(crate::profiles::MAX_PROFILES);
    if max_profiles == 0 {
        cx.err(
            "storage.max_profiles",
            "must be at least 1 (set storage.profiles: false to keep none)",
        );
    }
    let storage = StorageConfig {
        profiles: raw.profiles.unwrap_or(true),
        max_profiles,
        retention_max_age: cx.duration(
            &retention.max_age,
            Duration::from_secs(7 * 86_400),
            "storage.retention.max_age",
        ),
        retention_max_bytes: cx.size(
            &retention.max_bytes,
            50 << 30,
            "storage.retention.max_bytes",
        ),
        segment_bytes: cx.size(&raw.segment_bytes, 64 << 20, "storage.segment_bytes"),
        commit_window: cx.duration(
            &raw.commit_window,
            Duration::from_millis(1),
            "storage.commit_window",
        ),
        queue_bytes: cx.size(&raw.queue_bytes, 64 << 20, "storage.queue_bytes"),
    };
    if !(4096..=1 << 30).contains(&storage.segment_bytes) {
        cx.err("storage.segment_bytes", "must be between 4KiB and 1GiB");
    }
    if storage.commit_window > Duration::from_millis(50) {
        cx.err(
            "storage.commit_window",
            "must be at most 50ms: every ack waits for it",
        );
    }
    if storage.queue_bytes < 1 << 20 {
        cx.err("storage.queue_bytes", "must be at least 1MiB");
    }
    storage
}

fn compile_dedupe(cx: &mut Cx, v: Option<&Value>) -> DedupeConfig {
    let raw: RawDedupe = cx.section(v, "dedupe").unwrap_or_default();
    let window = cx.duration(&raw.window, Duration::from_secs(86_400), "dedupe.window");
    if window < Duration::from_secs(1) {
        cx.err("dedupe.window", "must be at least 1s");
    }
    DedupeConfig {
        window,
        max_keys: raw.max_keys.unwrap_or(200_000_000),
    }
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks ids in a list: the pattern and uniqueness. Returns the path label of each item.
pub(super) fn list_items<'a>(
    cx: &mut Cx,
    v: Option<&'a Value>,
    name: &str,
) -> Vec<(String, &'a Value)> {
    let Some(v) = v else { return Vec::new() };
    let Some(items) = v.as_sequence() else {
        cx.err(name, "must be a list");
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let label = item_label(item).unwrap_or_else(|| i.to_string());
        let path = format!("{name}[{label}]");
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            if !valid_id(id) {
                cx.err(
                    format!("{path}.id"),
                    format!("id {id:?} must match [a-z0-9_-]+"),
                );
            } else if !seen.insert(id.to_owned()) {
                cx.err(format!("{path}.id"), format!("duplicate id {id:?}"));
            }
        }
        out.push((path, item));
    }
    out
}

/// An FQL condition, or the error at `path`.
pub(crate) fn fql(cx: &mut Cx, src: &str, path: &str) -> Option<Fql> {
    Fql::parse(src)
        .map_err(|e| cx.err(path, format!("invalid FQL: {e}")))
        .ok()
}
