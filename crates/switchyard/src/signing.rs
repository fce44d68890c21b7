//! Webhook signatures, outbound (docs/destinations.md#signing) and inbound
//! (docs/sources.md#signature-schemes).
//!
//! - Segment's `X-Signature`: lowercase hex HMAC-SHA1 of the exact body bytes; for a batch,
//!   of the first element's bytes only (that is how Segment signs, and receivers rely on it).
//! - Standard Webhooks: `v1,` + base64 HMAC-SHA256 over `id.timestamp.body`, with a
//!   `whsec_`-prefixed base64 secret; verification allows 5 minutes of skew either way and
//!   accepts any of several signatures (key rotation). Comparisons are constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Standard Webhooks' timestamp tolerance, both ways.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("a Standard Webhooks secret must be whsec_ followed by base64 of 24 to 64 bytes")]
    BadSecret,
    #[error("no signature header")]
    Missing,
    #[error("the webhook timestamp is not an integer")]
    BadTimestamp,
    #[error("the webhook timestamp is more than 5 minutes away from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// `X-Signature` for a body (or, for a batch, for its first element's bytes).
pub fn segment_signature(secret: &str, signed: &[u8]) -> String {
    hex::encode(hmac_sha1(secret.as_bytes(), signed))
}

/// Checks a received `X-Signature` in constant time.
pub fn verify_segment(secret: &str, signed: &[u8], header: &str) -> Result<(), SigningError> {
    let want = segment_signature(secret, signed);
    let ok: bool = want
        .as_bytes()
        .ct_eq(header.trim().to_ascii_lowercase().as_bytes())
        .into();
    if ok {
        Ok(())
    } else {
        Err(SigningError::Mismatch)
    }
}

// HMAC takes keys of any length, so `new_from_slice` never fails; if it ever did, the empty
// result would match no signature (fail closed) rather than panic.
fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <Hmac<Sha1> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            parts.iter().for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A Standard Webhooks signing key.
#[derive(Clone)]
pub struct StandardWebhooks {
    key: Vec<u8>,
}

impl StandardWebhooks {
    /// Parses `whsec_<base64>`.
    pub fn from_secret(secret: &str) -> Result<StandardWebhooks, SigningError> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or(SigningError::BadSecret)?;
        let key = STANDARD.decode(b64).map_err(|_| SigningError::BadSecret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SigningError::BadSecret);
        }
        Ok(StandardWebhooks { key })
    }

    /// The `webhook-signature` value: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let mac = hmac_sha256(&self.key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        format!("v1,{}", STANDARD.encode(mac))
    }

    /// Verifies `webhook-signature` (space-separated `v1,<sig>` entries) at time `now`.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        header: &str,
        now: i64,
    ) -> Result<(), SigningError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SigningError::BadTimestamp)?;
        // `abs_diff` cannot overflow: `now - ts` did for far-off timestamps (a panic in a
        // debug build, a wrap that could pass as fresh in a release build).
        if now.abs_diff(ts) > TOLERANCE_SECS.unsigned_abs() {
            return Err(SigningError::Stale);
        }
        let want = self.sign(id, ts, body);
        let want = want.as_bytes();
        let any = header
            .split_whitespace()
            .filter(|s| s.starts_with("v1,"))
            .fold(false, |found, sig| {
                found | bool::from(sig.as_bytes().ct_eq(want))
            });
        if any {
            Ok(())
        } else {
            Err(SigningError::Mismatch)
        }
    }
}

/// Checks a plain HMAC-SHA256 signature (already decoded from hex or base64) over `body`, in
/// constant time: the `hmac_sha256` verify scheme (GitHub-style `X-Hub-Signature-256`).
pub fn verify_hmac_sha256(secret: &str, body: &[u8], signature: &[u8]) -> Result<(), SigningError> {
    let want = hmac_sha256(secret.as_bytes(), &[body]);
    if bool::from(want.ct_eq(signature)) {
        Ok(())
    } else {
        Err(SigningError::Mismatch)
    }
}

/// `msg_` + the first 32 hex characters of sha256 over `source \n messageId \n destination
/// \n mapping`: the same on every retry and after a restart (docs/destinations.md#signing).
pub fn webhook_id(source: &str, message_id: &str, destination: &str, mapping: &str) -> String {
    let digest =
        Sha256::digest(format!("{source}\n{message_id}\n{destination}\n{mapping}").as_bytes());
    format!("msg_{}", &hex::encode(digest)[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_vectors() {
        // The examples of docs/destinations.md#signing.
        assert_eq!(
            segment_signature("abc123", br#"{"cool":true}"#),
            "5099cab379b3be52908387457007040cc934ef86"
        );
        assert_eq!(
            segment_signature("abc123", br#"{"cool":false}"#),
            "c702b94a2569dd8d2f7185ce0ae951021bef4706",
            "a batch signs its first element"
        );
        assert!(
            verify_segment(
                "abc123",
                br#"{"cool":true}"#,
                "5099CAB379B3BE52908387457007040CC934EF86"
            )
            .is_ok()
        );
        assert_eq!(
            verify_segment(
                "abc123",
                br#"{"cool":true} "#,
                "5099cab379b3be52908387457007040cc934ef86"
            ),
            Err(SigningError::Mismatch)
        );
    }

    #[test]
    fn standard_webhooks_vector_and_verification() {
        // The test vector of the Standard Webhooks reference library (`test_sign`).
        let sw = StandardWebhooks::from_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let sig = sw.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        assert!(
            sw.verify(id, "1649367553", body, &sig, 1649367553 + 299)
                .is_ok()
        );
        assert!(
            sw.verify(
                id,
                "1649367553",
                body,
                &format!("v1,AAAA {sig}"),
                1649367553
            )
            .is_ok(),
            "any of several signatures"
        );
        assert_eq!(
            sw.verify(id, "1649367553", body, &sig, 1649367553 + 301),
            Err(SigningError::Stale)
        );
        assert_eq!(
            sw.verify(id, "1649367553", body, &sig, 1649367553 - 301),
            Err(SigningError::Stale)
        );
        assert_eq!(
            sw.verify(id, "1649367553", b"{}", &sig, 1649367553),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            sw.verify(id, "soon", body, &sig, 1649367553),
            Err(SigningError::BadTimestamp)
        );
        assert!(StandardWebhooks::from_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err());
        assert!(
            StandardWebhooks::from_secret("whsec_c2hvcnQ=").is_err(),
            "keys under 24 bytes are refused"
        );
    }

    #[test]
    fn hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
            .unwrap();
        assert!(verify_hmac_sha256("Jefe", b"what do ya want for nothing?", &sig).is_ok());
        assert_eq!(
            verify_hmac_sha256("Jefe", b"what do ya want for nothing!", &sig),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256("Jefe", b"x", &sig[..31]),
            Err(SigningError::Mismatch)
        );
    }

    #[test]
    fn webhook_ids_are_stable() {
        let a = webhook_id("web", "m-1", "knock", "Send to Knock");
        assert_eq!(a, webhook_id("web", "m-1", "knock", "Send to Knock"));
        assert_ne!(a, webhook_id("web", "m-1", "knock", "Other"));
        assert!(a.starts_with("msg_") && a.len() == 36);
    }
}
