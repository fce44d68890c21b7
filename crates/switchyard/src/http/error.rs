//! The one error shape of every route: `{"error": slug, "code": slug, "message": text}`,
//! plus `Retry-After` (and `X-RateLimit-Reset` on 429) when the client should come back.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            message,
        )
    }
    /// 429: the client should wait `secs` and retry (SDKs do so without spending a retry).
    pub fn too_many(code: &'static str, message: impl Into<String>, secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }
    /// 503: starting up or draining.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
    /// 500 whose details are logged, not sent.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(code, error = %detail, "Internal error while handling a request");
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                code,
                "internal error; retry later",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "code": self.code, "message": self.message});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            let v = HeaderValue::from(secs);
            resp.headers_mut().insert("retry-after", v.clone());
            if self.status == StatusCode::TOO_MANY_REQUESTS {
                resp.headers_mut().insert("x-ratelimit-reset", v);
            }
        }
        resp
    }
}
