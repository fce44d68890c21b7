//! Write-key authentication for the Tracking API (docs/wire.md#write-key): the Basic username, with
//! or without the trailing colon, or `writeKey` in the body. Header first; both present and
//! different is a conflict. Every failure is a 401.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::http::ApiError;

/// The write key from an `Authorization: Basic` header, if there is one.
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let Some((scheme, rest)) = text.split_once(' ') else {
        return Err(invalid());
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        // OAuth is not supported; such a request must carry `writeKey` in the body.
        return Ok(None);
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid());
    }
    let rest = rest.trim();
    let decoded = STANDARD
        .decode(rest)
        .or_else(|_| STANDARD_NO_PAD.decode(rest))
        .map_err(|_| invalid())?;
    let creds = String::from_utf8(decoded).map_err(|_| invalid())?;
    let user = creds.split_once(':').map_or(creds.as_str(), |(u, _)| u);
    Ok((!user.is_empty()).then(|| user.to_owned()))
}

fn invalid() -> ApiError {
    ApiError::unauthorized(
        "invalid_authorization",
        "the Authorization header is not valid Basic auth",
    )
}

/// Resolves the write key to `(source, environment)`.
pub fn resolve<'a>(
    keys: &'a HashMap<String, (String, String)>,
    header: Option<&str>,
    body: Option<&str>,
) -> Result<&'a (String, String), ApiError> {
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::unauthorized(
                "conflicting_write_key",
                "the write key in the Authorization header and the body differ",
            ));
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(ApiError::unauthorized(
                "missing_write_key",
                "no write key: send it as the Basic auth username or as writeKey in the body",
            ));
        }
    };
    keys.get(key)
        .ok_or_else(|| ApiError::unauthorized("invalid_write_key", "unknown write key"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw))).unwrap(),
        );
        h
    }

    #[test]
    fn basic_with_and_without_colon() {
        assert_eq!(
            header_key(&basic("abc123:")).unwrap().as_deref(),
            Some("abc123")
        );
        assert_eq!(
            header_key(&basic("abc123")).unwrap().as_deref(),
            Some("abc123")
        );
        assert_eq!(header_key(&HeaderMap::new()).unwrap(), None);
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWJjMTIzOg=="),
        );
        assert_eq!(
            header_key(&h).unwrap().as_deref(),
            Some("abc123"),
            "the reference's example"
        );
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(header_key(&h).is_err());
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
        assert_eq!(header_key(&h).unwrap(), None);
    }

    #[test]
    fn resolution_rules() {
        let keys: HashMap<_, _> =
            [("k1".to_owned(), ("web".to_owned(), "production".to_owned()))].into();
        assert_eq!(resolve(&keys, Some("k1"), None).unwrap().0, "web");
        assert_eq!(resolve(&keys, None, Some("k1")).unwrap().0, "web");
        assert_eq!(resolve(&keys, Some("k1"), Some("k1")).unwrap().0, "web");
        assert_eq!(
            resolve(&keys, Some("k1"), Some("k2")).unwrap_err().code,
            "conflicting_write_key"
        );
        assert_eq!(
            resolve(&keys, None, None).unwrap_err().code,
            "missing_write_key"
        );
        assert_eq!(
            resolve(&keys, Some("nope"), None).unwrap_err().code,
            "invalid_write_key"
        );
    }
}
