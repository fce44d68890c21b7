//! The admin API's extractors: axum's `Query`, `Path` and `Json`, whose rejections answer in
//! our error shape (`{"error","code","message"}`) instead of axum's plain text.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Query parameters; a bad one answers 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Query(q.0)),
            Err(r) => Err(ApiError::bad_request("invalid_query", r.body_text())),
        }
    }
}

/// Path parameters; one that does not decode answers 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            Err(r) => Err(ApiError::bad_request("invalid_path", r.body_text())),
        }
    }
}

/// A JSON request body; one that does not parse or fit answers 400 `invalid_json` (or 415
/// without a JSON content type, 413 over the size limit).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match <axum::Json<T> as FromRequest<S>>::from_request(req, state).await {
            Ok(j) => Ok(JsonBody(j.0)),
            Err(r) => Err(json_error(&r)),
        }
    }
}

/// An optional JSON body: none without a JSON content type.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        match <axum::Json<T> as OptionalFromRequest<S>>::from_request(req, state).await {
            Ok(j) => Ok(j.map(|j| JsonBody(j.0))),
            Err(r) => Err(json_error(&r)),
        }
    }
}

fn json_error(r: &JsonRejection) -> ApiError {
    match r.status().as_u16() {
        413 => ApiError::payload_too_large(r.body_text()),
        415 => ApiError::new(r.status(), "unsupported_media_type", r.body_text()),
        _ => ApiError::bad_request("invalid_json", r.body_text()),
    }
}
