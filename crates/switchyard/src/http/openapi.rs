//! `GET /api/v1/openapi.json`: the API described by `openapi.yaml`, served as JSON. The test
//! below holds the document to the routes `mod.rs` really serves, both ways.

use std::sync::OnceLock;

use axum::Json;
use serde_json::Value;

use super::ApiError;

const SOURCE: &str = include_str!("openapi.yaml");

fn document() -> &'static Result<Value, String> {
    static DOC: OnceLock<Result<Value, String>> = OnceLock::new();
    DOC.get_or_init(|| serde_yaml_ng::from_str(SOURCE).map_err(|e| e.to_string()))
}

pub async fn openapi() -> Result<Json<Value>, ApiError> {
    match document() {
        Ok(doc) => Ok(Json(doc.clone())),
        Err(e) => Err(ApiError::internal("openapi_invalid", e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD path)` of every `.route(...)` in `mod.rs`.
    fn served() -> BTreeSet<String> {
        let src = include_str!("mod.rs");
        let mut out = BTreeSet::new();
        for call in src.split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a route's path literal");
            let after = &call[call.find(path).unwrap() + path.len()..];
            let method = ["get(", "post("]
                .iter()
                .filter_map(|m| after.find(m).map(|at| (at, *m)))
                .min()
                .map(|(_, m)| m.trim_end_matches('(').to_uppercase())
                .expect("a route's method");
            out.insert(format!("{method} {path}"));
        }
        out
    }

    #[test]
    fn the_document_names_exactly_the_routes_served() {
        let doc = document().as_ref().expect("openapi.yaml parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
        assert_eq!(documented, served());
    }
}
