//! Admin auth for `/api`, `/metrics` (and later `/ui`), docs/security.md#admin-auth:
//! - with `admin_token`: `Authorization: Bearer <token>`, compared in constant time;
//! - without: only on a loopback listener, and only for requests whose `Host` is a loopback
//!   name and whose `Origin`, if any, is the server itself (DNS rebinding and CSRF); a
//!   browser's `Sec-Fetch-Site` other than `same-origin` or `none` is refused too, so a
//!   cross-site request a browser sends without `Origin` (an `<img>`, a `<script>`) is too.
//!
//! Tokens are read from `Authorization` only, never from the query string or a cookie.
//! Unknown paths under `/api` and `/ui` pass through here too (`http/mod.rs`), so without
//! credentials they answer 401 like the real routes instead of telling which exist.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::state::AppState;

pub async fn admin_auth(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = req.headers();
    match &state.config.server.admin_token {
        Some(token) => {
            let given = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                // The auth scheme is case-insensitive (RFC 9110 §11.1): `bearer` works too.
                .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token));
            let ok = given.is_some_and(|g| bool::from(g.trim().as_bytes().ct_eq(token.as_bytes())));
            if !ok {
                return Err(ApiError::unauthorized(
                    "unauthorized",
                    "this route needs Authorization: Bearer <admin_token>",
                ));
            }
        }
        None => {
            let host = headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !is_loopback_host(host) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_host",
                    "without admin_token, the admin API only answers requests addressed to a loopback host",
                ));
            }
            if let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
                let own = origin.strip_prefix("http://").is_some_and(|o| o == host);
                if !own {
                    return Err(cross_origin());
                }
            }
            // Fetch metadata: what the browser says about where the request comes from.
            let site = headers
                .get("sec-fetch-site")
                .map(|v| v.to_str().unwrap_or("?"));
            if site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
                return Err(cross_origin());
            }
        }
    }
    Ok(next.run(req).await)
}

fn cross_origin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden_origin",
        "cross-origin requests to the admin API are refused",
    )
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port (digits only).
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.starts_with('[') && !host.ends_with(']') && port.is_none() {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8088",
            "127.0.0.1:80",
            "127.9.9.9",
            "[::1]:8088",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.com",
            "evil.com:8088",
            "10.0.0.1:8088",
            "localhost.evil.com",
            "[::2]:1",
            "127.0.0.1:8088@evil.example",
            "localhost:80:80",
            "localhost:",
            "[::1]x",
            "[::1]:8x",
            "[::1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
