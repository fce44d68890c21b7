//! The mapping-kit: Segment's declarative payload mappings (docs/mappings.md#mapping-kit).
//!
//! `Mapping::compile` validates at config time (every error carries its path inside the
//! mapping); `Mapping::evaluate` resolves against an event. Where Segment's JavaScript has
//! oddities, `docs/divergences.md` lists what we do instead.

pub mod path;
mod resolve;
mod root;
mod validate;

use serde_json::Value;
use thiserror::Error;

pub use path::js_string;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct MappingError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping(Value);

impl Mapping {
    pub fn compile(v: Value) -> Result<Mapping, MappingError> {
        let v = root::expand(v)?;
        validate::validate(&v, "")?;
        Ok(Mapping(v))
    }

    /// The whole event, as Segment's default `data` mapping `{"@path": "$."}`.
    pub fn whole_event() -> Mapping {
        Mapping(serde_json::json!({"@path": "$."}))
    }

    /// Resolves against `input`, which must be an object. `None` means the mapping
    /// resolved to undefined.
    pub fn evaluate(&self, input: &Value) -> Result<Option<Value>, MappingError> {
        if !input.is_object() {
            return Err(MappingError {
                path: String::new(),
                message: "the input must be a JSON object".into(),
            });
        }
        resolve::resolve(&self.0, input)
    }
}

#[cfg(test)]
mod segment_cases;
#[cfg(test)]
mod tests;

/// One answer of Segment's "Test Mapping" (docs/mappings.md#test-mapping): `switchyard
/// test-mapping` and `POST /api/v1/test-mapping`.
#[derive(Debug, serde::Serialize, PartialEq)]
pub struct TestResult {
    pub matched: bool,
    pub payload: Option<Value>,
    pub error: Option<String>,
}

impl TestResult {
    fn error(msg: impl Into<String>) -> TestResult {
        TestResult {
            matched: false,
            payload: None,
            error: Some(msg.into()),
        }
    }
}

/// Evaluates `{"subscribe": FQL, "mapping": {...}, "event": {...}}` exactly as given: no
/// normalisation, no removal of empty values. A missing `mapping` is the whole event.
pub fn test_mapping(input: &Value) -> TestResult {
    let Some(obj) = input.as_object() else {
        return TestResult::error("expected an object {\"subscribe\", \"mapping\", \"event\"}");
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["subscribe", "mapping", "event"].contains(&k.as_str()))
    {
        return TestResult::error(format!(
            "unknown key {k:?}; expected subscribe, mapping and event"
        ));
    }
    let Some(subscribe) = obj.get("subscribe").and_then(Value::as_str) else {
        return TestResult::error("subscribe must be an FQL string, e.g. \"type = \\\"track\\\"\"");
    };
    let fql = match crate::fql::Fql::parse(subscribe) {
        Ok(f) => f,
        Err(e) => return TestResult::error(format!("subscribe: {e}")),
    };
    let mapping = match obj.get("mapping") {
        None => Mapping::whole_event(),
        Some(m) => match Mapping::compile(m.clone()) {
            Ok(m) => m,
            Err(e) => return TestResult::error(format!("mapping: {e}")),
        },
    };
    let Some(event) = obj.get("event").filter(|e| e.is_object()) else {
        return TestResult::error("event must be a JSON object");
    };
    if !fql.matches(event) {
        return TestResult {
            matched: false,
            payload: None,
            error: None,
        };
    }
    match mapping.evaluate(event) {
        Ok(payload) => TestResult {
            matched: true,
            payload,
            error: None,
        },
        Err(e) => TestResult {
            matched: true,
            payload: None,
            error: Some(format!("mapping: {e}")),
        },
    }
}
