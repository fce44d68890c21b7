//! Reading a request body: bounded, decompressed (gzip or deflate) with a hard cap on the
//! decompressed size, so a decompression bomb costs at most the limit.

use std::io::Read;

use axum::body::Body;
use axum::http::header::CONTENT_ENCODING;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::http::ApiError;

/// A request body may be this large once decompressed (docs/wire.md#limits).
pub const MAX_BODY_BYTES: usize = 512_000;

pub async fn read(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    read_limited(headers, body, MAX_BODY_BYTES).await
}

/// `read` with another decompressed limit (webhook sources use `functions.max_body`). The
/// wire limit is an eighth more: deflate never expands real data by more than a few bytes
/// per block, so a compressed body over it could not decompress under the limit.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let wire = axum::body::to_bytes(body, limit + limit / 8)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                too_large(limit)
            } else {
                ApiError::bad_request("body_read_failed", "could not read the request body")
            }
        })?;
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    decode(encoding, wire, limit)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::payload_too_large(format!(
        "request body is over {limit} bytes (measured decompressed)"
    ))
}

/// Decodes `wire` per `Content-Encoding`, refusing more than `limit` decompressed bytes.
pub fn decode(encoding: &str, wire: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let out = match encoding.as_str() {
        "" | "identity" => wire,
        "gzip" | "x-gzip" => inflate(MultiGzDecoder::new(&wire[..]), limit)?,
        // HTTP "deflate" is zlib-wrapped, but some clients send raw deflate: accept both.
        // Only a body that is not zlib falls back; one over the limit stays a 413.
        "deflate" => match inflate(ZlibDecoder::new(&wire[..]), limit) {
            Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => return Err(e),
            Ok(out) => out,
            Err(_) => inflate(DeflateDecoder::new(&wire[..]), limit)?,
        },
        other => {
            let msg = format!("unsupported Content-Encoding {other:?}; use gzip, deflate or none");
            return Err(ApiError::unsupported_media(msg));
        }
    };
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

fn inflate(reader: impl Read, limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| {
            ApiError::bad_request("invalid_encoding", "the body could not be decompressed")
        })?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn plain_gzip_and_deflate() {
        let body = br#"{"batch":[]}"#;
        assert_eq!(
            &decode("identity", Bytes::from_static(body), MAX_BODY_BYTES).unwrap()[..],
            body
        );
        assert_eq!(
            &decode("gzip", gzip(body), MAX_BODY_BYTES).unwrap()[..],
            body
        );
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(body).unwrap();
        assert_eq!(
            &decode("deflate", Bytes::from(z.finish().unwrap()), MAX_BODY_BYTES).unwrap()[..],
            body
        );
    }

    #[test]
    fn bombs_and_garbage() {
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100_000, "a 50 MiB bomb compresses small");
        assert_eq!(
            decode("gzip", bomb, MAX_BODY_BYTES).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            decode("gzip", Bytes::from_static(b"not gzip"), MAX_BODY_BYTES)
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            decode("br", Bytes::new(), MAX_BODY_BYTES)
                .unwrap_err()
                .status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        // Regression: an oversized zlib body answered 400 once the raw fallback failed.
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&vec![b' '; 2 * MAX_BODY_BYTES]).unwrap();
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&vec![b' '; 2 * MAX_BODY_BYTES]).unwrap();
        for bomb in [zlib.finish().unwrap(), raw.finish().unwrap()] {
            assert_eq!(
                decode("deflate", Bytes::from(bomb), MAX_BODY_BYTES)
                    .unwrap_err()
                    .status,
                StatusCode::PAYLOAD_TOO_LARGE
            );
        }
        let limit = vec![b' '; MAX_BODY_BYTES];
        assert!(
            decode("gzip", gzip(&limit), MAX_BODY_BYTES).is_ok(),
            "exactly the limit is fine"
        );
    }
}
