//! Admin auth for `/api`, `/metrics` (and later `/ui`), SPEC §4:
//! - with `admin_token`: `Authorization: Bearer <token>`, compared in constant time;
//! - without: only on a loopback listener, and only for requests whose `Host` is a loopback
//!   name and whose `Origin`, if any, is the server itself (DNS rebinding and CSRF).

use axum::extract::{Request, State};
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
                    axum::http::StatusCode::FORBIDDEN,
                    "forbidden_host",
                    "without admin_token, the admin API only answers requests addressed to a loopback host",
                ));
            }
            if let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
                let own = origin.strip_prefix("http://").is_some_and(|o| o == host);
                if !own {
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "forbidden_origin",
                        "cross-origin requests to the admin API are refused",
                    ));
                }
            }
        }
    }
    Ok(next.run(req).await)
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
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
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
