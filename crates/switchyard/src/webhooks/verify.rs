//! Authenticating a webhook request before anything else runs (docs/sources.md#authentication): the
//! signature (`verify`) over the exact raw body, and/or the source token from the path, `?token=`
//! or `Authorization: Bearer`. Every comparison is constant-time; each failure has a reason.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::config::{Verify, WebhookSource};
use crate::signing::{self, SigningError};

/// Where a token may have arrived.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    pub path_token: Option<&'a str>,
    pub query: Option<&'a str>,
}

/// `Ok` when the request may proceed; otherwise the reason shown to the caller and in the
/// debugger.
pub fn authenticate(
    src: &WebhookSource,
    presented: Presented<'_>,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), String> {
    if let Some(v) = &src.verify {
        signature(v, headers, body, now_secs)?;
    }
    if let Some(want) = &src.token {
        let got = presented
            .path_token
            .map(str::to_owned)
            .or_else(|| query_token(presented.query))
            .or_else(|| bearer(headers))
            .ok_or("missing token: pass it as /webhooks/{id}/{token}, ?token= or Authorization: Bearer")?;
        if !bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
            return Err("the token does not match this source".into());
        }
    }
    Ok(())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = header(headers, "authorization")?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn signature(v: &Verify, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
    match v {
        Verify::Segment {
            secret,
            allow_unsigned_batch_tail,
        } => {
            let sig = header(headers, "x-signature").ok_or("missing X-Signature header")?;
            let signed = segment_signed_bytes(body, *allow_unsigned_batch_tail)?;
            signing::verify_segment(secret, signed, sig).map_err(|_| {
                "X-Signature does not match the body (HMAC-SHA1 with the shared secret)".into()
            })
        }
        Verify::StandardWebhooks(key) => {
            let get = |name: &str| {
                header(headers, &format!("webhook-{name}"))
                    .or_else(|| header(headers, &format!("svix-{name}")))
            };
            let id = get("id").ok_or("missing webhook-id header")?;
            let ts = get("timestamp").ok_or("missing webhook-timestamp header")?;
            let sig = get("signature").ok_or("missing webhook-signature header")?;
            key.verify(id, ts, body, sig, now).map_err(|e| match e {
                SigningError::Mismatch => {
                    "webhook-signature does not match (Standard Webhooks v1)".to_owned()
                }
                other => other.to_string(),
            })
        }
        Verify::HmacSha256 {
            secret,
            header: name,
            base64,
            prefix,
        } => {
            let raw = header(headers, name)
                .ok_or_else(|| format!("missing {name} header"))?
                .trim();
            let encoded = raw
                .strip_prefix(prefix.as_str())
                .ok_or_else(|| format!("{name} does not start with {prefix:?}"))?;
            let sig = if *base64 {
                STANDARD.decode(encoded).ok()
            } else {
                hex::decode(encoded).ok()
            };
            let sig = sig.ok_or_else(|| {
                format!(
                    "{name} is not valid {}",
                    if *base64 { "base64" } else { "hex" }
                )
            })?;
            signing::verify_hmac_sha256(secret, body, &sig).map_err(|_| {
                format!("{name} does not match the body (HMAC-SHA256 with the secret)")
            })
        }
    }
}

/// Segment signs a batch by its first element only (docs/sources.md#signature-schemes): for an
/// array body, the first element's raw bytes are what the signature covers.
fn segment_signed_bytes(body: &[u8], allow_tail: bool) -> Result<&[u8], String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Ok(body);
    }
    let items: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON array: {e}"))?;
    match items.as_slice() {
        [] => Err("an empty array carries nothing to verify".into()),
        [one] => Ok(one.get().as_bytes()),
        [first, ..] if allow_tail => Ok(first.get().as_bytes()),
        many => Err(format!(
            "an array of {} events: Segment signs only the first, so the rest cannot be verified; set verify.allow_unsigned_batch_tail: true to accept them",
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests;
