//! FQL evaluation with Segment's exact semantics (docs/mappings.md#evaluation): strict string `=`,
//! `!=` true on a missing field, numeric comparisons only on JSON numbers.

use std::borrow::Cow;

use serde_json::Value;

use crate::mapping::path::js_walk;

use super::ast::{Cond, Conj, Expr, Field, Op};

pub fn matches(expr: &Expr, event: &Value) -> bool {
    match expr {
        Expr::Group {
            conj: Conj::And,
            children,
        } => children.iter().all(|c| matches(c, event)),
        Expr::Group {
            conj: Conj::Or,
            children,
        } => children.iter().any(|c| matches(c, event)),
        Expr::Cond(c) => cond(c, event),
    }
}

/// The value a field names: `type`, `event`, `name`, `userId` at the top level;
/// properties/traits/context paths walked as Segment's `get` walks them (JavaScript's
/// `cur && cur[key]`, see `mapping::path::js_walk`).
pub fn lookup<'a>(field: &Field, event: &'a Value) -> Option<Cow<'a, Value>> {
    let (root, path) = match field {
        Field::Type => return event.get("type").map(Cow::Borrowed),
        Field::Event => return event.get("event").map(Cow::Borrowed),
        Field::Name => return event.get("name").map(Cow::Borrowed),
        Field::UserId => return event.get("userId").map(Cow::Borrowed),
        Field::Properties(p) => ("properties", p),
        Field::Traits(p) => ("traits", p),
        Field::Context(p) => ("context", p),
    };
    js_walk(event.get(root)?, path.iter().map(String::as_str))
}

fn cond(c: &Cond, event: &Value) -> bool {
    let actual = lookup(&c.field, event);
    let actual = actual.as_deref();
    let text = actual.and_then(Value::as_str);
    let num = actual
        .and_then(Value::as_f64)
        .filter(|_| actual.is_some_and(Value::is_number));
    match &c.op {
        Op::Eq(s) => text == Some(s.as_str()),
        Op::Ne(s) => text != Some(s.as_str()),
        Op::NumEq(n) => num.is_some_and(|a| a == *n),
        Op::NumNe(n) => num.is_some_and(|a| a != *n),
        Op::Lt(n) => num.is_some_and(|a| a < *n),
        Op::Le(n) => num.is_some_and(|a| a <= *n),
        Op::Gt(n) => num.is_some_and(|a| a > *n),
        Op::Ge(n) => num.is_some_and(|a| a >= *n),
        Op::Contains(s) => text.is_some_and(|a| a.contains(s.as_str())),
        Op::NotContains(s) => text.is_some_and(|a| !a.contains(s.as_str())),
        Op::StartsWith(s) => text.is_some_and(|a| a.starts_with(s.as_str())),
        Op::NotStartsWith(s) => text.is_some_and(|a| !a.starts_with(s.as_str())),
        Op::EndsWith(s) => text.is_some_and(|a| a.ends_with(s.as_str())),
        Op::NotEndsWith(s) => text.is_some_and(|a| !a.ends_with(s.as_str())),
        Op::Exists => actual.is_some_and(|a| !a.is_null()),
        Op::NotExists => actual.is_none_or(Value::is_null),
        Op::IsTrue => actual == Some(&Value::Bool(true)),
        Op::IsFalse => actual == Some(&Value::Bool(false)),
    }
}
