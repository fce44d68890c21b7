//! `sources:` and `functions:`: HTTP API sources with their write keys, and webhook sources
//! with their authentication, idempotency and function. A function file is read relative to
//! the config file and compiled now, so a syntax error is reported as `file:line:col`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::compile::{Cx, list_items, valid_id};
use super::raw::*;
use super::*;
use crate::functions::Limits;
use crate::functions::pool::FunctionSpec;

const SOURCE_TYPES: &str = "http_api, webhook";

type WriteKeys = HashMap<String, (String, String)>;

pub(super) fn compile_functions(cx: &mut Cx, v: Option<&Value>) -> FunctionsConfig {
    let raw: RawFunctions = cx.section(v, "functions").unwrap_or_default();
    let deadline = cx.duration(&raw.deadline, Duration::from_secs(5), "functions.deadline");
    let memory = cx.size(&raw.memory, 128 << 20, "functions.memory");
    if memory < 4 << 20 {
        cx.err("functions.memory", "must be at least 4MiB");
    }
    let max_body = cx.size(&raw.max_body, 512 << 10, "functions.max_body");
    if raw.workers == Some(0) {
        cx.err("functions.workers", "must be at least 1");
    }
    let retry = raw.retry.unwrap_or_default();
    if retry.attempts == Some(0) {
        cx.err("functions.retry.attempts", "must be at least 1");
    }
    FunctionsConfig {
        limits: Limits {
            deadline,
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
        },
        max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
        workers: raw.workers.unwrap_or(2).max(1),
        retry: FunctionRetry {
            attempts: retry.attempts.unwrap_or(6),
            initial: cx.duration(
                &retry.initial,
                Duration::from_secs(60),
                "functions.retry.initial",
            ),
            max: cx.duration(&retry.max, Duration::from_secs(1200), "functions.retry.max"),
        },
    }
}

pub(super) fn compile(
    cx: &mut Cx,
    v: Option<&Value>,
    functions: &FunctionsConfig,
    config_file: &str,
) -> (Vec<SourceConfig>, WriteKeys) {
    let mut sources = Vec::new();
    let mut keys: WriteKeys = HashMap::new();
    let base = Path::new(config_file).parent().unwrap_or(Path::new("."));
    for (path, item) in list_items(cx, v, "sources") {
        let Some(raw) = cx.section::<RawSource>(Some(item), &path) else {
            continue;
        };
        let kind = match raw.kind.as_str() {
            "http_api" => http_api(cx, &raw, &path, &mut keys),
            "webhook" => webhook(cx, &raw, &path, functions, base).map(SourceKind::Webhook),
            other => {
                cx.err(
                    format!("{path}.type"),
                    format!("unknown source type {other:?}; expected one of {SOURCE_TYPES}"),
                );
                None
            }
        };
        if let Some(kind) = kind {
            sources.push(SourceConfig { id: raw.id, kind });
        }
    }
    (sources, keys)
}

fn only_for(cx: &mut Cx, path: &str, kind: &str, fields: &[(&str, bool)]) {
    for (field, set) in fields {
        if *set {
            cx.err(
                format!("{path}.{field}"),
                format!("only {kind} sources take this key"),
            );
        }
    }
}

fn http_api(cx: &mut Cx, raw: &RawSource, path: &str, keys: &mut WriteKeys) -> Option<SourceKind> {
    only_for(
        cx,
        path,
        "webhook",
        &[
            ("function", raw.function.is_some()),
            ("token", raw.token.is_some()),
            ("verify", raw.verify.is_some()),
            ("settings", raw.settings.is_some()),
            ("idempotency", raw.idempotency.is_some()),
            ("environment", raw.environment.is_some()),
            ("public", raw.public.is_some()),
        ],
    );
    let write_keys: Vec<(String, String)> = raw
        .write_keys
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if write_keys.is_empty() {
        cx.err(
            format!("{path}.write_keys"),
            "an http_api source needs at least one write key, e.g. { production: wk_... }",
        );
    }
    for (env, key) in &write_keys {
        let kpath = format!("{path}.write_keys.{env}");
        if !valid_id(env) {
            cx.err(
                &kpath,
                format!("environment {env:?} must match [a-z0-9_-]+"),
            );
        }
        if key.is_empty()
            || key.len() > 200
            || key.contains(':')
            || key.chars().any(char::is_control)
        {
            cx.err(
                &kpath,
                "a write key must be 1-200 characters, without ':' or control characters",
            );
        } else if let Some((other, _)) = keys.insert(key.clone(), (raw.id.clone(), env.clone())) {
            cx.err(
                &kpath,
                format!("this write key is already used by source {other:?}"),
            );
        }
    }
    Some(SourceKind::HttpApi {
        write_keys,
        rate_limit: raw.rate_limit.unwrap_or(0),
    })
}

fn webhook(
    cx: &mut Cx,
    raw: &RawSource,
    path: &str,
    functions: &FunctionsConfig,
    base: &Path,
) -> Option<Box<WebhookSource>> {
    only_for(
        cx,
        path,
        "http_api",
        &[
            ("write_keys", raw.write_keys.is_some()),
            ("rate_limit", raw.rate_limit.is_some()),
        ],
    );
    let environment = raw
        .environment
        .clone()
        .unwrap_or_else(|| "production".into());
    if !valid_id(&environment) {
        cx.err(
            format!("{path}.environment"),
            format!("environment {environment:?} must match [a-z0-9_-]+"),
        );
    }
    let (token, verify, public) = authentication(cx, raw, path);
    if raw.settings.is_some() && raw.function.is_none() {
        cx.err(
            format!("{path}.settings"),
            "settings are passed to a function; this source has none",
        );
    }
    let idempotency = idempotency(cx, raw.idempotency.as_ref(), path);
    let function = raw.function.as_ref().and_then(|f| {
        let settings = serde_json::to_string(
            &raw.settings
                .clone()
                .unwrap_or(Value::Mapping(Default::default())),
        )
        .unwrap_or_else(|_| "{}".into());
        load_function(
            cx,
            &raw.id,
            f,
            base,
            settings,
            functions,
            &format!("{path}.function"),
        )
    });
    Some(Box::new(WebhookSource {
        environment,
        function,
        token,
        verify,
        public,
        idempotency,
    }))
}

/// `token`, `verify` and `public`: at least one must be set (docs/sources.md#authentication).
fn authentication(
    cx: &mut Cx,
    raw: &RawSource,
    path: &str,
) -> (Option<String>, Option<Verify>, bool) {
    let token = raw.token.clone();
    if token
        .as_deref()
        .is_some_and(|t| t.len() < 16 || t.contains('/') || t.chars().any(char::is_control))
    {
        cx.err(
            format!("{path}.token"),
            "a token must be at least 16 characters, without '/' or control characters",
        );
    }
    let verify = raw
        .verify
        .as_ref()
        .and_then(|v| verify(cx, v, &format!("{path}.verify")));
    let public = raw.public.unwrap_or(false);
    if raw.verify.is_none() && token.is_none() && !public {
        cx.err(
            path,
            "a webhook source needs verify, a token, or an explicit public: true (docs/sources.md#authentication)",
        );
    }
    (token, verify, public)
}

/// `idempotency`: on unless `enabled: false`; key `messageId` and window 24h by default.
fn idempotency(cx: &mut Cx, idem: Option<&RawIdempotency>, path: &str) -> Option<Idempotency> {
    if idem.and_then(|i| i.enabled) == Some(false) {
        return None;
    }
    let key = idem
        .and_then(|i| i.key.clone())
        .unwrap_or_else(|| "messageId".into());
    if key.is_empty() || key.split('.').any(str::is_empty) {
        cx.err(
            format!("{path}.idempotency.key"),
            "must be a dot path such as messageId or data.id",
        );
    }
    let window = cx.duration(
        &idem.and_then(|i| i.window.clone()),
        Duration::from_secs(86_400),
        &format!("{path}.idempotency.window"),
    );
    Some(Idempotency {
        key: key.split('.').map(str::to_owned).collect(),
        window,
    })
}

fn verify(cx: &mut Cx, v: &RawVerify, path: &str) -> Option<Verify> {
    if v.secret.is_empty() {
        cx.err(format!("{path}.secret"), "must not be empty");
    }
    let hmac_only = [
        ("header", v.header.is_some()),
        ("encoding", v.encoding.is_some()),
        ("prefix", v.prefix.is_some()),
    ];
    if matches!(v.scheme.as_str(), "segment" | "standard_webhooks") {
        for (field, _) in hmac_only.iter().filter(|(_, set)| *set) {
            cx.err(
                format!("{path}.{field}"),
                "only scheme hmac_sha256 takes this key",
            );
        }
    }
    if v.allow_unsigned_batch_tail.is_some() && v.scheme != "segment" {
        cx.err(
            format!("{path}.allow_unsigned_batch_tail"),
            "only scheme segment takes this key",
        );
    }
    match v.scheme.as_str() {
        "segment" => Some(Verify::Segment {
            secret: v.secret.clone(),
            allow_unsigned_batch_tail: v.allow_unsigned_batch_tail.unwrap_or(false),
        }),
        "standard_webhooks" => match crate::signing::StandardWebhooks::from_secret(&v.secret) {
            Ok(k) => Some(Verify::StandardWebhooks(k)),
            Err(e) => {
                cx.err(format!("{path}.secret"), e.to_string());
                None
            }
        },
        "hmac_sha256" => hmac_sha256(cx, v, path),
        other => {
            cx.err(
                format!("{path}.scheme"),
                format!(
                    "unknown scheme {other:?}; expected segment, standard_webhooks or hmac_sha256"
                ),
            );
            None
        }
    }
}

fn hmac_sha256(cx: &mut Cx, v: &RawVerify, path: &str) -> Option<Verify> {
    let Some(header) = v
        .header
        .clone()
        .filter(|h| axum::http::HeaderName::try_from(h.as_str()).is_ok())
    else {
        cx.err(
            format!("{path}.header"),
            "hmac_sha256 needs the header that carries the signature, e.g. X-Hub-Signature-256",
        );
        return None;
    };
    let base64 = match v.encoding.as_deref().unwrap_or("hex") {
        "hex" => false,
        "base64" => true,
        other => {
            cx.err(
                format!("{path}.encoding"),
                format!("unknown encoding {other:?}; expected hex or base64"),
            );
            false
        }
    };
    Some(Verify::HmacSha256 {
        secret: v.secret.clone(),
        header,
        base64,
        prefix: v.prefix.clone().unwrap_or_default(),
    })
}

fn load_function(
    cx: &mut Cx,
    source: &str,
    file: &str,
    base: &Path,
    settings_json: String,
    functions: &FunctionsConfig,
    path: &str,
) -> Option<FunctionSpec> {
    let full = base.join(file);
    let filename = full.display().to_string();
    let code = match std::fs::read_to_string(&full) {
        Ok(c) => c,
        Err(e) => {
            cx.err(path, format!("cannot read function file {filename}: {e}"));
            return None;
        }
    };
    if let Err(e) = crate::functions::check(&filename, &code, functions.limits) {
        cx.err(e.location, e.message);
        return None;
    }
    Some(FunctionSpec {
        source: source.to_owned(),
        filename,
        code: Arc::from(code),
        settings_json,
    })
}
