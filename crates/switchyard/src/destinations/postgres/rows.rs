//! One normalised event → the warehouse rows it makes (docs/destinations.md#warehouse): standard
//! columns, flattened `context_*`, and properties or traits as snake_case columns, each value with
//! the type its JSON suggests. Arrays become JSON text; nulls make no column; a property that
//! collides with a standard column is dropped; of two keys that snake to the same column, the later
//! wins.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::snake::snakecase;
use super::standard::TableKind;

/// Postgres truncates identifiers to 63 bytes; we do it first so names stay predictable.
pub const MAX_NAME: usize = 63;

/// Segment's logical types and the Postgres types they become (docs/destinations.md#types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColType {
    Timestamp,
    Integer,
    Float,
    Boolean,
    Text,
}

impl ColType {
    /// A value of this type, in words (for discard reasons).
    pub fn noun(self) -> &'static str {
        match self {
            ColType::Timestamp => "a date-time",
            ColType::Integer => "an integer",
            ColType::Float => "a decimal",
            ColType::Boolean => "a boolean",
            ColType::Text => "a string",
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            ColType::Timestamp => "timestamptz",
            ColType::Integer => "bigint",
            ColType::Float => "numeric",
            ColType::Boolean => "boolean",
            ColType::Text => "text",
        }
    }

    /// The type of an existing column, from `information_schema.columns.data_type`.
    pub fn from_pg(data_type: &str) -> ColType {
        match data_type {
            "timestamp with time zone" | "timestamp without time zone" => ColType::Timestamp,
            "bigint" | "integer" | "smallint" => ColType::Integer,
            "numeric" | "double precision" | "real" => ColType::Float,
            "boolean" => ColType::Boolean,
            _ => ColType::Text,
        }
    }
}

/// One value: the type it suggests and its text (COPY renders it).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub ty: ColType,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: String,
    /// `id` first; names are unique.
    pub cols: IndexMap<String, Cell>,
    /// `users` and object collections: one row per id, upserted (later values win).
    pub upsert: bool,
    /// Which standard columns the table has (`standard.rs`).
    pub kind: TableKind,
}

/// The standard tables; an event table named like one of them gets `_event` appended.
pub const STANDARD_TABLES: [&str; 8] = [
    "tracks",
    "identifies",
    "users",
    "pages",
    "screens",
    "groups",
    "aliases",
    "_switchyard_discards",
];

pub fn infer(v: &Value) -> Option<Cell> {
    let (ty, text) = match v {
        Value::Null | Value::Object(_) => return None,
        Value::Bool(b) => (ColType::Boolean, b.to_string()),
        Value::Number(n) if n.is_i64() => (ColType::Integer, n.to_string()),
        Value::Number(n) => (ColType::Float, n.to_string()),
        Value::String(s) if is_timestamp(s) => (ColType::Timestamp, s.clone()),
        Value::String(s) => (ColType::Text, s.clone()),
        Value::Array(_) => (ColType::Text, v.to_string()),
    };
    Some(Cell { ty, text })
}

/// An ISO-8601 date-time with a zone (RFC 3339), which Postgres reads as `timestamptz`.
fn is_timestamp(s: &str) -> bool {
    s.len() >= 20
        && s.as_bytes()[4] == b'-'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// Whether Postgres takes an RFC 3339 timestamp: not year 0, and a zone offset within
/// ±15:59 (RFC 3339 allows both; Postgres refuses them).
pub fn pg_holds_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.starts_with(b"0000") {
        return false;
    }
    match b.len().checked_sub(6).map(|i| &b[i..]) {
        Some([b'+' | b'-', h1 @ b'0'..=b'9', h2 @ b'0'..=b'9', b':', _, _]) => {
            (h1 - b'0') * 10 + (h2 - b'0') <= 15
        }
        _ => true,
    }
}

/// Removes U+0000, which Postgres text cannot hold, from every string value of `v`, and from
/// the keys of objects inside arrays (those become JSON text). Keys that become columns keep
/// it: go-snakecase reads it as a separator, like any other non-alphanumeric character.
pub fn strip_nul(v: &mut Value) {
    strip(v, false);
}

fn strip(v: &mut Value, json_text: bool) {
    match v {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(|item| strip(item, true)),
        // Keys that become equal keep the later value, as JSON parsers do.
        Value::Object(map) if json_text && map.keys().any(|k| k.contains('\0')) => {
            for (mut k, mut item) in std::mem::take(map) {
                k.retain(|c| c != '\0');
                strip(&mut item, true);
                map.insert(k, item);
            }
        }
        Value::Object(map) => map.values_mut().for_each(|item| strip(item, json_text)),
        _ => {}
    }
}

fn name(prefix: &str, key: &str) -> String {
    let s = snakecase(key);
    let mut full = if prefix.is_empty() || s.is_empty() {
        format!("{prefix}{s}")
    } else {
        format!("{prefix}_{s}")
    };
    full.truncate(MAX_NAME);
    full
}

/// Flattens `obj` under `prefix` into `out`; names in `reserved` are left alone.
fn flatten(
    prefix: &str,
    obj: &Map<String, Value>,
    out: &mut IndexMap<String, Cell>,
    reserved: &[String],
) {
    for (k, v) in obj {
        let col = name(prefix, k);
        if col.is_empty() || col == prefix {
            continue;
        }
        match v {
            Value::Object(inner) => flatten(&col, inner, out, reserved),
            other => {
                if let Some(cell) = infer(other)
                    && !reserved.contains(&col)
                {
                    out.insert(col, cell);
                }
            }
        }
    }
}

fn text(s: &str) -> Cell {
    Cell {
        ty: ColType::Text,
        text: s.to_owned(),
    }
}

fn timestamp(s: &str) -> Cell {
    Cell {
        ty: ColType::Timestamp,
        text: s.to_owned(),
    }
}

/// The columns every event table has, plus `extra` (type-specific standard fields).
fn standard(
    ev: &Map<String, Value>,
    uuid_ts: &str,
    extra: &[(&str, &str)],
) -> IndexMap<String, Cell> {
    let mut cols = IndexMap::new();
    let str_of = |k: &str| ev.get(k).and_then(Value::as_str);
    cols.insert("id".into(), text(str_of("messageId").unwrap_or_default()));
    for (col, key) in [
        ("received_at", "receivedAt"),
        ("sent_at", "sentAt"),
        ("timestamp", "timestamp"),
    ] {
        if let Some(s) = str_of(key) {
            cols.insert(col.into(), timestamp(s));
        }
    }
    let original = str_of("originalTimestamp").or(str_of("timestamp"));
    if let Some(s) = original {
        cols.insert("original_timestamp".into(), timestamp(s));
    }
    cols.insert("uuid_ts".into(), timestamp(uuid_ts));
    for (col, key) in [("user_id", "userId"), ("anonymous_id", "anonymousId")] {
        if let Some(s) = str_of(key) {
            cols.insert(col.into(), text(s));
        }
    }
    for (col, value) in extra {
        cols.insert((*col).into(), text(value));
    }
    if let Some(Value::Object(ctx)) = ev.get("context") {
        flatten("context", ctx, &mut cols, &[]);
    }
    cols
}

/// Standard columns, then the custom ones from `custom` (properties or traits).
fn with_custom(mut cols: IndexMap<String, Cell>, custom: Option<&Value>) -> IndexMap<String, Cell> {
    if let Some(Value::Object(obj)) = custom {
        let reserved: Vec<String> = cols.keys().cloned().collect();
        flatten("", obj, &mut cols, &reserved);
    }
    cols
}

/// The rows one event makes. `uuid_ts` is the load time.
pub fn rows_for(ev: &Map<String, Value>, uuid_ts: &str) -> Vec<Row> {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or_default();
    let row = |table: &str, kind, cols| Row {
        table: table.to_owned(),
        cols,
        upsert: kind == TableKind::User,
        kind,
    };
    match s("type") {
        "track" => {
            let event = s("event");
            let slug = snakecase(event);
            let base = standard(
                ev,
                uuid_ts,
                &[("event", slug.as_str()), ("event_text", event)],
            );
            let mut out = vec![row("tracks", TableKind::Track, base.clone())];
            if !slug.is_empty() {
                let mut table = slug.clone();
                if STANDARD_TABLES.contains(&table.as_str()) {
                    table.push_str("_event");
                }
                table.truncate(MAX_NAME);
                out.push(row(
                    &table,
                    TableKind::Track,
                    with_custom(base, ev.get("properties")),
                ));
            }
            out
        }
        "identify" => {
            let base = standard(ev, uuid_ts, &[]);
            let cols = with_custom(base.clone(), ev.get("traits"));
            let mut out = vec![row("identifies", TableKind::Identify, cols.clone())];
            if let Some(user) = ev.get("userId").and_then(Value::as_str) {
                out.push(row("users", TableKind::User, user_row(&base, &cols, user)));
            }
            out
        }
        "page" | "screen" => {
            let extra: Vec<(&str, &str)> = ["name", "category"]
                .into_iter()
                .filter(|k| ev.get(*k).is_some_and(Value::is_string))
                .map(|k| (k, s(k)))
                .collect();
            let (table, kind) = if s("type") == "page" {
                ("pages", TableKind::Page)
            } else {
                ("screens", TableKind::Screen)
            };
            vec![row(
                table,
                kind,
                with_custom(standard(ev, uuid_ts, &extra), ev.get("properties")),
            )]
        }
        "group" => {
            let base = standard(ev, uuid_ts, &[("group_id", s("groupId"))]);
            vec![row(
                "groups",
                TableKind::Group,
                with_custom(base, ev.get("traits")),
            )]
        }
        "alias" => vec![row(
            "aliases",
            TableKind::Alias,
            standard(ev, uuid_ts, &[("previous_id", s("previousId"))]),
        )],
        _ => Vec::new(),
    }
}

/// A `Segment.set` object → a row of `<collection>`, keyed by its id
/// (docs/destinations.md#layout). `received_at` is when the function's request arrived.
pub fn object_row(obj: &Map<String, Value>, received_at: &str, uuid_ts: &str) -> Option<Row> {
    let collection = obj.get("collection").and_then(Value::as_str)?;
    let id = obj.get("id").and_then(Value::as_str)?;
    let mut table = snakecase(collection);
    if table.is_empty() {
        return None;
    }
    if STANDARD_TABLES.contains(&table.as_str()) {
        table.push_str("_object");
    }
    table.truncate(MAX_NAME);
    let mut cols = IndexMap::new();
    cols.insert("id".into(), text(id));
    cols.insert("received_at".into(), timestamp(received_at));
    cols.insert("uuid_ts".into(), timestamp(uuid_ts));
    let cols = with_custom(cols, obj.get("properties"));
    Some(Row {
        table,
        cols,
        upsert: true,
        kind: TableKind::Object,
    })
}

/// `users`: one row per user id (docs/destinations.md#layout): `id` is the user id, then
/// `received_at`, `uuid_ts` and the identify's traits; no `anonymous_id` or context.
fn user_row(
    standard: &IndexMap<String, Cell>,
    identify: &IndexMap<String, Cell>,
    user: &str,
) -> IndexMap<String, Cell> {
    let mut cols = IndexMap::new();
    cols.insert("id".into(), text(user));
    for k in ["received_at", "uuid_ts"] {
        if let Some(v) = standard.get(k) {
            cols.insert(k.into(), v.clone());
        }
    }
    for (k, v) in identify {
        if !standard.contains_key(k) {
            cols.insert(k.clone(), v.clone());
        }
    }
    cols
}

#[cfg(test)]
mod tests;
