//! FQL, Segment's trigger-condition language (docs/mappings.md#fql).
//!
//! `Fql::parse` is strict: it rejects what Segment would silently misread (see `parser.rs`),
//! so every condition we accept evaluates exactly as it does in Segment (`eval.rs`).

mod ast;
mod eval;
mod lexer;
mod parser;

use serde_json::Value;
use thiserror::Error;

pub use ast::{Cond, Conj, Expr, Field, Op};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct FqlError(pub String);

/// A compiled trigger condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Fql {
    source: String,
    expr: Expr,
}

impl Fql {
    pub fn parse(source: &str) -> Result<Fql, FqlError> {
        let tokens = lexer::lex(source)?;
        let expr = parser::parse(&tokens)?;
        Ok(Fql {
            source: source.to_owned(),
            expr,
        })
    }

    /// A condition every event matches (used where no condition is configured).
    pub fn always() -> Fql {
        Fql {
            source: String::new(),
            expr: Expr::Group {
                conj: Conj::And,
                children: Vec::new(),
            },
        }
    }

    pub fn matches(&self, event: &Value) -> bool {
        event.is_object() && eval::matches(&self.expr, event)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

/// JavaScript's `String(number)`: the shortest round-trip digits, `1e+21` / `1e-7` outside
/// `[1e-6, 1e21)`, and `0` for negative zero.
pub fn js_number_string(n: f64) -> String {
    if n == 0.0 {
        return "0".into();
    }
    if !n.is_finite() {
        return if n.is_nan() {
            "NaN"
        } else if n > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .into();
    }
    if (1e-6..1e21).contains(&n.abs()) {
        return format!("{n}");
    }
    let e = format!("{n:e}");
    match e.split_once('e') {
        Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
        _ => e,
    }
}

#[cfg(test)]
mod tests;
