//! Validation and normalisation of one Segment message.
//!
//! The element is parsed one level deep (`IndexMap<String, &RawValue>`): nested objects such
//! as `properties` and `traits` are copied as raw bytes, never re-serialised. Only the fields
//! we set or check are touched, and the element's field order is kept.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::merge::deep_merge;
use super::{EventType, readable, timestamp};

/// Per-event size limit, measured on the element's raw bytes before the envelope merge.
pub const MAX_EVENT_BYTES: usize = 32_768;
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

/// What every element of one request shares.
pub struct RequestContext<'a> {
    pub source: &'a str,
    pub environment: &'a str,
    pub received_at: OffsetDateTime,
    /// Set on single-event routes (`/v1/track`, `/v1/t`, ...): the path decides the type.
    pub path_type: Option<EventType>,
    pub sent_at: Option<&'a RawValue>,
    pub context: Option<&'a RawValue>,
    pub integrations: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Normalized {
    pub message_id: String,
    pub body: Vec<u8>,
    pub warnings: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    /// A stable slug, used as the metric label.
    pub code: &'static str,
    pub message: String,
    pub message_id: Option<String>,
}

impl Rejection {
    fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            message_id: None,
        }
    }
}

enum Out<'a> {
    Raw(&'a RawValue),
    Owned(String),
}

/// A field name, borrowed from the request body unless it contains escapes.
#[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::borrow::Borrow<str> for Key<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Key<'static> {
    fn of(name: &'static str) -> Self {
        Key(Cow::Borrowed(name))
    }
}

type Fields<'a> = IndexMap<Key<'a>, Out<'a>>;

pub fn normalize(raw: &RawValue, cx: &RequestContext<'_>) -> Result<Normalized, Rejection> {
    // The messageId is looked up again only for a rejected event, off the accepted path.
    normalize_inner(raw, cx).map_err(|mut r| {
        r.message_id = message_id_hint(raw);
        r
    })
}

fn normalize_inner(raw: &RawValue, cx: &RequestContext<'_>) -> Result<Normalized, Rejection> {
    if raw.get().len() > MAX_EVENT_BYTES {
        let msg = format!(
            "event is {} bytes; the limit is {MAX_EVENT_BYTES}",
            raw.get().len()
        );
        return Err(Rejection::new("event_too_large", msg));
    }
    readable::check(raw.get(), readable::MAX_DEPTH).map_err(unreadable)?;
    let parsed: IndexMap<Key<'_>, &RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| Rejection::new("invalid_event", "event must be a JSON object"))?;
    let mut f: Fields<'_> = parsed.into_iter().map(|(k, v)| (k, Out::Raw(v))).collect();
    let ty = event_type(&f, cx.path_type)?;
    f.insert(Key::of("type"), Out::Owned(json_string(ty.as_str())));
    for key in ["writeKey", "originalTimestamp", "receivedAt", "version"] {
        f.shift_remove(key);
    }
    let user = coerce_id(&mut f, "userId")?;
    let anon = coerce_id(&mut f, "anonymousId")?;
    let group = coerce_id(&mut f, "groupId")?;
    let previous = coerce_id(&mut f, "previousId")?;
    check_required(ty, &f, user, anon, group, previous)?;
    let message_id = message_id(&mut f)?;
    let mut warnings = Vec::new();
    set_timestamps(&mut f, cx, &mut warnings);
    set_context(&mut f, cx, &mut warnings)?;
    if let Some(env_integrations) = cx.integrations {
        let merged = merge_raw(env_integrations, f.get("integrations"));
        f.insert(Key::of("integrations"), Out::Owned(merged));
    }
    f.insert(Key::of("version"), Out::Owned("2".into()));
    Ok(Normalized {
        message_id,
        body: write(&f),
        warnings,
    })
}

/// The rejection of JSON that a reader of the log could not parse back.
pub fn unreadable(detail: String) -> Rejection {
    Rejection::new(
        "unreadable_json",
        format!("the event holds JSON that destinations cannot read: {detail}"),
    )
}

fn event_type(f: &Fields<'_>, path_type: Option<EventType>) -> Result<EventType, Rejection> {
    if let Some(t) = path_type {
        return Ok(t);
    }
    let Some(raw) = f.get("type") else {
        return Err(Rejection::new("missing_type", "event has no \"type\""));
    };
    let name = str_of(raw).unwrap_or_default();
    EventType::parse(&name).ok_or_else(|| {
        Rejection::new("invalid_type", format!("unknown event type {name:?}; expected track, identify, page, screen, group or alias"))
    })
}

/// IDs: a string stays, a number becomes its decimal string, `null` and `""` mean absent.
/// Returns whether a usable ID is present.
fn coerce_id(f: &mut Fields<'_>, name: &str) -> Result<bool, Rejection> {
    let Some(Out::Raw(raw)) = f.get(name) else {
        return Ok(false);
    };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) if !s.is_empty() => Ok(true),
        Ok(Value::String(_) | Value::Null) => {
            f.shift_remove(name);
            Ok(false)
        }
        Ok(Value::Number(n)) => {
            let key = Key(Cow::Owned(name.to_owned()));
            f.insert(key, Out::Owned(json_string(&n.to_string())));
            Ok(true)
        }
        _ => Err(Rejection::new(
            "invalid_id",
            format!("{name} must be a string or a number"),
        )),
    }
}

fn check_required(
    ty: EventType,
    f: &Fields<'_>,
    user: bool,
    anon: bool,
    group: bool,
    previous: bool,
) -> Result<(), Rejection> {
    if !user && !anon {
        return Err(Rejection::new(
            "no_user_anon_id",
            "event needs a userId or an anonymousId",
        ));
    }
    match ty {
        EventType::Track => {
            let name = f.get("event").and_then(str_of).unwrap_or_default();
            if name.is_empty() {
                return Err(Rejection::new(
                    "missing_event_name",
                    "track event is missing a name (\"event\")",
                ));
            }
        }
        EventType::Group if !group => {
            return Err(Rejection::new(
                "missing_group_id",
                "group event needs a groupId",
            ));
        }
        EventType::Alias if !previous || !user => {
            return Err(Rejection::new(
                "invalid_alias",
                "alias event needs both previousId and userId",
            ));
        }
        _ => {}
    }
    Ok(())
}

fn message_id(f: &mut Fields<'_>) -> Result<String, Rejection> {
    let invalid = || Rejection::new("invalid_message_id", "messageId must be a string");
    let value = match f.get("messageId") {
        // A value that does not parse is refused, never replaced: a random id would defeat
        // the dedupe of a resend.
        Some(Out::Raw(raw)) => serde_json::from_str::<Value>(raw.get()).map_err(|_| invalid())?,
        _ => Value::Null,
    };
    let id = match value {
        Value::String(s) if !s.is_empty() => s,
        Value::Number(n) => n.to_string(),
        Value::Null | Value::String(_) => format!("api-{}", uuid::Uuid::new_v4()),
        _ => return Err(invalid()),
    };
    if id.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(Rejection::new(
            "message_id_too_long",
            format!("messageId is longer than {MAX_MESSAGE_ID_CHARS} characters"),
        ));
    }
    f.insert(Key::of("messageId"), Out::Owned(json_string(&id)));
    Ok(id)
}

fn set_timestamps(f: &mut Fields<'_>, cx: &RequestContext<'_>, warnings: &mut Vec<String>) {
    let mut parse_field = |raw: Option<&RawValue>, name: &str| -> Option<OffsetDateTime> {
        let raw = raw?;
        if raw.get() == "null" {
            return None;
        }
        let parsed = str_of_raw(raw).as_deref().and_then(timestamp::parse);
        if parsed.is_none() {
            warnings.push(format!(
                "unparseable {name} {} was treated as absent",
                truncate(raw.get(), 64)
            ));
        }
        parsed
    };
    let original = parse_field(raw_of(f.get("timestamp")), "timestamp");
    let own_sent = raw_of(f.get("sentAt"));
    let sent_at = parse_field(own_sent.or(cx.sent_at), "sentAt");
    let c = timestamp::correct(cx.received_at, sent_at, original);
    f.insert(
        Key::of("timestamp"),
        Out::Owned(json_string(&timestamp::format(c.timestamp))),
    );
    if let Some(o) = c.original {
        f.insert(
            Key::of("originalTimestamp"),
            Out::Owned(json_string(&timestamp::format(o))),
        );
    }
    match sent_at {
        Some(s) => f.insert(
            Key::of("sentAt"),
            Out::Owned(json_string(&timestamp::format(s))),
        ),
        None => f.shift_remove("sentAt"),
    };
    f.insert(
        Key::of("receivedAt"),
        Out::Owned(json_string(&timestamp::format(cx.received_at))),
    );
}

/// Merges the envelope context, then records where the event came from in
/// `context.switchyard`.
fn set_context(
    f: &mut Fields<'_>,
    cx: &RequestContext<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), Rejection> {
    let own = raw_of(f.get("context")).filter(|r| r.get() != "null");
    let mut ctx: IndexMap<String, Value> = match (cx.context, own) {
        (Some(env), own) => match serde_json::from_str(&merge_raw(env, own.map(Out::Raw).as_ref()))
        {
            Ok(Value::Object(m)) => m.into_iter().collect(),
            _ => IndexMap::new(),
        },
        (None, Some(own)) => match serde_json::from_str::<IndexMap<String, Value>>(own.get()) {
            Ok(m) => m,
            Err(_) => {
                warnings.push("context was not an object and was replaced".into());
                IndexMap::new()
            }
        },
        (None, None) => IndexMap::new(),
    };
    let tag = serde_json::json!({"source": cx.source, "environment": cx.environment});
    ctx.insert("switchyard".into(), tag);
    let text = serde_json::to_string(&ctx)
        .map_err(|e| Rejection::new("invalid_context", e.to_string()))?;
    f.insert(Key::of("context"), Out::Owned(text));
    Ok(())
}

fn merge_raw(envelope: &RawValue, own: Option<&Out<'_>>) -> String {
    let env: Value = serde_json::from_str(envelope.get()).unwrap_or(Value::Null);
    let own: Value = own
        .and_then(|o| serde_json::from_str(out_text(o)).ok())
        .unwrap_or(Value::Null);
    let merged = match (env, own) {
        (env @ Value::Object(_), Value::Null) => env,
        (env, own) => deep_merge(env, own),
    };
    merged.to_string()
}

fn write(f: &Fields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.values().map(|v| out_text(v).len() + 16).sum::<usize>() + 2);
    out.push(b'{');
    for (i, (k, v)) in f.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json_string(&k.0).as_bytes());
        out.push(b':');
        out.extend_from_slice(out_text(v).as_bytes());
    }
    out.push(b'}');
    out
}

fn out_text<'s>(o: &'s Out<'_>) -> &'s str {
    match o {
        Out::Raw(r) => r.get(),
        Out::Owned(s) => s,
    }
}

fn raw_of<'a>(o: Option<&Out<'a>>) -> Option<&'a RawValue> {
    match o {
        Some(Out::Raw(r)) => Some(r),
        _ => None,
    }
}

fn str_of(o: &Out<'_>) -> Option<String> {
    serde_json::from_str::<String>(out_text(o)).ok()
}

fn str_of_raw(r: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(r.get()).ok()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The element's messageId, if it has a string one, for the record of a rejected event.
fn message_id_hint(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "messageId")]
        message_id: Option<Value>,
    }
    match serde_json::from_str::<Head>(raw.get()).ok()?.message_id? {
        Value::String(s) => Some(s.chars().take(255).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the debugger shows for a rejected element, and what its log record keeps: never the
/// `writeKey`, and always JSON every reader can parse back. An object without its
/// `writeKey`; a small non-object with every `writeKey` value redacted; anything else (too large, or not readable) as a
/// string of its first 2 KiB with every `writeKey` value redacted.
pub fn rejected_display(raw: &str) -> Vec<u8> {
    if readable::check(raw, readable::MAX_DEPTH).is_ok() {
        if let Ok(mut m) = serde_json::from_str::<IndexMap<Key<'_>, &RawValue>>(raw) {
            m.shift_remove("writeKey");
            let text = serde_json::to_string(&m).unwrap_or_default();
            if text.len() <= MAX_EVENT_BYTES {
                return text.into_bytes();
            }
            return preview(&text);
        }
        if raw.len() <= MAX_EVENT_BYTES {
            // An array (a webhook body) may hold writeKeys one level down.
            return redact_write_keys(raw).into_owned().into_bytes();
        }
    }
    preview(&redact_write_keys(raw))
}

fn preview(text: &str) -> Vec<u8> {
    let preview = format!("{}…", truncate(text, 2048));
    serde_json::to_vec(&Value::String(preview)).unwrap_or_default()
}

/// Replaces the value of every `"writeKey": "..."` in text that may not parse as JSON.
fn redact_write_keys(raw: &str) -> Cow<'_, str> {
    const NAME: &str = "\"writeKey\"";
    if !raw.contains(NAME) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find(NAME) {
        let after = at + NAME.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        let value_at = rest
            .find(|c: char| !c.is_whitespace() && c != ':')
            .unwrap_or(rest.len());
        if !rest[value_at..].starts_with('"') {
            continue;
        }
        let body = &rest[value_at + 1..];
        let end = string_end(body).unwrap_or(body.len());
        out.push_str(&rest[..=value_at]);
        out.push_str(&crate::redact::redacted(&body[..end]));
        rest = &body[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The byte offset of the closing quote of a JSON string body, skipping escapes.
fn string_end(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests;
