//! Reading a request body: bounded, decompressed (gzip or deflate) with a hard cap on the
//! decompressed size, so a decompression bomb costs at most the limit.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_ENCODING;
use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::http::ApiError;

/// A request body may be this large once decompressed (SPEC §4).
pub const MAX_BODY_BYTES: usize = 512_000;
/// The compressed (wire) size limit. Deflate never expands real data by more than a few
/// bytes per block, so a compressed body over this could not decompress under the limit.
pub const MAX_WIRE_BYTES: usize = MAX_BODY_BYTES + MAX_BODY_BYTES / 8;

pub async fn read(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let wire = axum::body::to_bytes(body, MAX_WIRE_BYTES)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                too_large()
            } else {
                ApiError::bad_request("body_read_failed", "could not read the request body")
            }
        })?;
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    decode(encoding, wire)
}

fn too_large() -> ApiError {
    ApiError::payload_too_large(format!(
        "request body is over {MAX_BODY_BYTES} bytes (measured decompressed)"
    ))
}

/// Decodes `wire` per `Content-Encoding`.
pub fn decode(encoding: &str, wire: Bytes) -> Result<Bytes, ApiError> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let out = match encoding.as_str() {
        "" | "identity" => wire,
        "gzip" | "x-gzip" => inflate(MultiGzDecoder::new(&wire[..]))?,
        // HTTP "deflate" is zlib-wrapped, but some clients send raw deflate: accept both.
        "deflate" => inflate(ZlibDecoder::new(&wire[..]))
            .or_else(|_| inflate(DeflateDecoder::new(&wire[..])))?,
        other => {
            let msg = format!("unsupported Content-Encoding {other:?}; use gzip, deflate or none");
            return Err(ApiError::unsupported_media(msg));
        }
    };
    if out.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

fn inflate(reader: impl Read) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    reader
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| {
            ApiError::bad_request("invalid_encoding", "the body could not be decompressed")
        })?;
    if out.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::StatusCode;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};

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
            &decode("identity", Bytes::from_static(body)).unwrap()[..],
            body
        );
        assert_eq!(&decode("gzip", gzip(body)).unwrap()[..], body);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(body).unwrap();
        assert_eq!(
            &decode("deflate", Bytes::from(z.finish().unwrap())).unwrap()[..],
            body
        );
    }

    #[test]
    fn bombs_and_garbage() {
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100_000, "a 50 MiB bomb compresses small");
        assert_eq!(
            decode("gzip", bomb).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            decode("gzip", Bytes::from_static(b"not gzip"))
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            decode("br", Bytes::new()).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let limit = vec![b' '; MAX_BODY_BYTES];
        assert!(
            decode("gzip", gzip(&limit)).is_ok(),
            "exactly the limit is fine"
        );
    }
}
