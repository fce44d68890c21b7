//! Compiling `destinations:`: the keys every destination has (`id`, `type`, `sources`,
//! `environments`, `start`, `subscribe`, `backlog`), then `kind` hands the rest to the
//! type's own compile under `destinations/<type>/config.rs`.

use std::collections::HashSet;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::compile::{Cx, fql, list_items};
use super::raw::*;
use super::*;
use crate::destinations::{file, nats, postgres, segment, webhook};

pub(super) fn compile(
    cx: &mut Cx,
    v: Option<&Value>,
    sources: &[SourceConfig],
    server: &ServerConfig,
) -> Vec<DestinationConfig> {
    let mut out = Vec::new();
    let mut paths = HashSet::new();
    for (path, item) in list_items(cx, v, "destinations") {
        let Some(raw) = cx.section::<RawDestination>(Some(item), &path) else {
            continue;
        };
        if let Some(list) = &raw.sources {
            for s in list.iter().filter(|s| !sources.iter().any(|x| &x.id == *s)) {
                cx.err(format!("{path}.sources"), format!("unknown source {s:?}"));
            }
        }
        let start = match raw.start.as_deref() {
            None | Some("latest") => Start::Latest,
            Some("earliest") => Start::Earliest,
            Some(other) => {
                cx.err(
                    format!("{path}.start"),
                    format!("unknown start {other:?}; expected latest or earliest"),
                );
                Start::Latest
            }
        };
        let subscribe = raw
            .subscribe
            .as_deref()
            .and_then(|s| fql(cx, s, &format!("{path}.subscribe")));
        let backlog = backlog(cx, raw.backlog.as_ref(), &path);
        let webhook = matches!(raw.kind.as_str(), "webhook" | "segment" | "nats");
        for (field, set) in [
            ("delivery", raw.delivery.is_some()),
            ("retry", raw.retry.is_some()),
            ("mappings", raw.mappings.is_some()),
        ] {
            if set && !webhook {
                cx.err(
                    format!("{path}.{field}"),
                    "only webhook destinations take this key in this build",
                );
            }
        }
        let Some(kind) = kind(cx, &raw, &path, server, &mut paths) else {
            continue;
        };
        out.push(DestinationConfig {
            id: raw.id,
            subscribe,
            sources: raw.sources,
            environments: raw.environments,
            start,
            backlog,
            kind,
        });
    }
    out
}

const DESTINATION_TYPES: &str = "webhook, postgres, segment, nats, file";

/// The registry of destination types: `type:` → that type's compile in
/// `destinations/<type>/config.rs`. A new type adds one line here and one to
/// `DESTINATION_TYPES`.
fn kind(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
    server: &ServerConfig,
    paths: &mut HashSet<std::path::PathBuf>,
) -> Option<DestinationKind> {
    let settings = raw.settings.as_ref();
    match raw.kind.as_str() {
        "file" => file::config::compile_file(cx, settings, path, paths),
        "webhook" => webhook::config::compile_webhook(cx, raw, path, server)
            .map(|w| DestinationKind::Webhook(Box::new(w))),
        "segment" => segment::config::compile_segment(cx, raw, path, server)
            .map(|(w, f)| DestinationKind::Segment(Box::new(w), f)),
        "nats" => nats::config::compile_nats(cx, raw, path)
            .map(|(w, n)| DestinationKind::Nats(Box::new(w), n)),
        "postgres" => postgres::config::compile_postgres(cx, settings, path),
        other => {
            cx.err(
                format!("{path}.type"),
                format!("unknown destination type {other:?}; expected one of {DESTINATION_TYPES}"),
            );
            None
        }
    }
}

/// `backlog: { max_bytes, max_age }`, every key optional.
fn backlog(cx: &mut Cx, v: Option<&Value>, path: &str) -> BacklogConfig {
    let bpath = format!("{path}.backlog");
    let default = BacklogConfig::default();
    let Some(raw) = cx.section::<RawBacklog>(v, &bpath) else {
        return default;
    };
    let max_bytes = cx.size(
        &raw.max_bytes,
        default.max_bytes,
        &format!("{bpath}.max_bytes"),
    );
    if max_bytes < 4096 {
        cx.err(format!("{bpath}.max_bytes"), "must be at least 4KiB");
    }
    let max_age = cx.duration(&raw.max_age, default.max_age, &format!("{bpath}.max_age"));
    if max_age < Duration::from_secs(1) {
        cx.err(format!("{bpath}.max_age"), "must be at least 1s");
    }
    BacklogConfig { max_bytes, max_age }
}
