//! Secrets never leave in what we show (docs/security.md#secrets): a redacted value reads
//! `***:<first 8 hex of its sha256>`, so two equal secrets can still be told apart.

use sha2::{Digest, Sha256};

pub fn redacted(value: &str) -> String {
    format!(
        "***:{}",
        &hex::encode(Sha256::digest(value.as_bytes()))[..8]
    )
}

/// Header values that are secrets: credentials, and any header whose name mentions a key,
/// token, secret or signature.
pub fn header(name: &str, value: &str) -> String {
    if is_secret_header(name) {
        redacted(value)
    } else {
        value.to_owned()
    }
}

/// Whether a header carries a secret; stored raw requests drop these (docs/security.md#secrets).
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "cookie" | "proxy-authorization"
    ) || ["key", "token", "secret", "signature"]
        .iter()
        .any(|w| n.contains(w))
}

/// A URL with its user-info and query values redacted.
pub fn url(u: &str) -> String {
    let (base, query) = match u.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (u, None),
    };
    let base = match base.split_once("://") {
        // The user-info ends at the authority's last `@` (a password may hold one).
        Some((scheme, rest)) => {
            let authority = rest.split('/').next().unwrap_or(rest);
            match authority.rfind('@') {
                Some(at) => format!("{scheme}://{}{}", redacted(&rest[..at]), &rest[at..]),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    match query {
        None => base,
        Some(q) => {
            let parts: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => format!("{k}={}", redacted(v)),
                    None => kv.to_owned(),
                })
                .collect();
            format!("{base}?{}", parts.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(header("X-Env", "prod"), "prod");
        for h in [
            "Authorization",
            "cookie",
            "X-Api-Key",
            "x-auth-token",
            "X-Shared-Secret",
            "X-Signature",
        ] {
            assert!(header(h, "s3cret").starts_with("***:"), "{h}");
        }
        assert_eq!(redacted("s3cret").len(), 12);
        assert_eq!(url("https://api.example/v1/x"), "https://api.example/v1/x");
        let u = url("https://user:pw@api.example/hook?token=abc&x");
        assert!(
            u.starts_with("https://***:")
                && u.contains("@api.example/hook?token=***:")
                && u.ends_with("&x"),
            "{u}"
        );
        assert!(!u.contains("abc") && !u.contains("pw"));
        // A password holding an unescaped `@` is redacted whole (the last `@` ends it).
        let u = url("nats://user:p@ss@127.0.0.1:4222");
        assert!(
            u.starts_with("nats://***:") && u.ends_with("@127.0.0.1:4222"),
            "{u}"
        );
        assert!(!u.contains("ss@1"), "{u}");
        assert_eq!(
            url("https://h/a@b"),
            "https://h/a@b",
            "an @ in the path is not user-info"
        );
    }
}
