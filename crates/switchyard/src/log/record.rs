//! The on-disk record format of the event log.
//!
//! ```text
//! frame   := len:u32le  crc:u32le  payload[len]          crc = crc32c(payload)
//! payload := version:u8(=1) kind:u8 seq:u64le received_ms:i64le
//!            source_len:u16le source  env_len:u8 env  mid_len:u16le message_id
//!            reason_len:u16le reason  body...
//! ```
//!
//! `body` is the normalised event exactly as destinations receive it (JSON bytes); it is
//! never re-parsed by the log. Duplicates and rejections are recorded too, so that the ack
//! for them is as durable as the ack for accepted events; consumers skip them.

use std::sync::Arc;

use thiserror::Error;

pub const FRAME_HEADER: usize = 8;
/// Upper bound of one payload: a 500 KB request body can never produce a bigger record.
pub const MAX_PAYLOAD: usize = 4 << 20;
const VERSION: u8 = 1;
/// version, kind, seq, received_ms and the four length prefixes.
const MIN_PAYLOAD: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Accepted = 1,
    Duplicate = 2,
    Rejected = 3,
    /// A webhook request whose signature or token failed. Shown in the recent events only;
    /// never written to the log.
    Unverified = 4,
    /// A `Segment.set` object (`{collection, id, properties}`): read by warehouse
    /// destinations only, never shown in the debugger (docs/functions.md#globals).
    Object = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Accepted),
            2 => Some(Kind::Duplicate),
            3 => Some(Kind::Rejected),
            4 => Some(Kind::Unverified),
            5 => Some(Kind::Object),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Accepted => "accepted",
            Kind::Duplicate => "duplicate",
            Kind::Rejected => "rejected",
            Kind::Unverified => "unverified",
            Kind::Object => "object",
        }
    }
}

/// What the ingest path hands to the log writer. `seq` is assigned by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub received_ms: i64,
    pub source: Arc<str>,
    pub environment: Arc<str>,
    pub message_id: String,
    pub reason: String,
    pub body: Vec<u8>,
}

impl Entry {
    /// The dedupe key: `(source, environment, messageId)`, NUL-separated.
    pub fn dedupe_key(&self) -> Vec<u8> {
        dedupe_key(&self.source, &self.environment, &self.message_id)
    }
}

pub fn dedupe_key(source: &str, environment: &str, message_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(source.len() + environment.len() + message_id.len() + 2);
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(environment.as_bytes());
    key.push(0);
    key.extend_from_slice(message_id.as_bytes());
    key
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub entry: Entry,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is truncated")]
    Truncated,
    #[error("record checksum mismatch")]
    Checksum,
    #[error("record length {0} is out of range")]
    Length(usize),
    #[error("record is malformed: {0}")]
    Malformed(&'static str),
}

/// Appends one framed record to `out`. Field lengths are clamped by the ingest limits, so
/// the `as` casts below cannot truncate (sources/envs are validated ids, message ids ≤ 255).
pub fn encode(out: &mut Vec<u8>, seq: u64, e: &Entry) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.push(VERSION);
    out.push(e.kind as u8);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&e.received_ms.to_le_bytes());
    put_str16(out, &e.source);
    let env = &e.environment.as_bytes()[..e.environment.len().min(255)];
    out.push(env.len() as u8);
    out.extend_from_slice(env);
    put_str16(out, &e.message_id);
    put_str16(out, &e.reason);
    out.extend_from_slice(&e.body);
    let payload_len = out.len() - start - FRAME_HEADER;
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads the frame header at the start of `buf`: the payload length, validated.
pub fn frame_len(buf: &[u8]) -> Result<usize, DecodeError> {
    let header = buf.get(..FRAME_HEADER).ok_or(DecodeError::Truncated)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(DecodeError::Length(len));
    }
    Ok(len)
}

/// Whether a frame that starts at the start of `buf` could be record `min_seq` or one of
/// the next 2^24: a cheap test on the header before a checksum is computed (resync).
pub fn plausible(buf: &[u8], min_seq: u64) -> bool {
    let Some(head) = buf.get(..FRAME_HEADER + 10) else {
        return false;
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[FRAME_HEADER + 2..]);
    let seq = u64::from_le_bytes(seq);
    frame_len(buf).is_ok()
        && head[FRAME_HEADER] == VERSION
        && Kind::from_u8(head[FRAME_HEADER + 1]).is_some()
        && seq >= min_seq
        && seq - min_seq < 1 << 24
}

/// Decodes one frame from the start of `buf`, returning the record and the frame's size.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    let len = frame_len(buf)?;
    let payload = buf
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(DecodeError::Truncated)?;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if crc32c::crc32c(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    Ok((decode_payload(payload)?, FRAME_HEADER + len))
}

fn decode_payload(p: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { p, i: 0 };
    if r.u8()? != VERSION {
        return Err(DecodeError::Malformed("unknown version"));
    }
    let kind = Kind::from_u8(r.u8()?).ok_or(DecodeError::Malformed("unknown kind"))?;
    let seq = u64::from_le_bytes(r.array()?);
    let received_ms = i64::from_le_bytes(r.array()?);
    let source = r.str16()?;
    let env_len = usize::from(r.u8()?);
    let environment = r.string(env_len)?;
    let message_id = r.str16()?;
    let reason = r.str16()?;
    let body = p[r.i..].to_vec();
    let entry = Entry {
        kind,
        received_ms,
        source: source.into(),
        environment: environment.into(),
        message_id,
        reason,
        body,
    };
    Ok(Record { seq, entry })
}

struct Reader<'a> {
    p: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let s = self
            .p
            .get(self.i..self.i + n)
            .ok_or(DecodeError::Malformed("field overruns record"))?;
        self.i += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn string(&mut self, n: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| DecodeError::Malformed("field is not UTF-8"))
    }
    fn str16(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(u16::from_le_bytes(self.array()?));
        self.string(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(i: u64) -> Entry {
        Entry {
            kind: Kind::Accepted,
            received_ms: 1_700_000_000_000 + i as i64,
            source: "web".into(),
            environment: "production".into(),
            message_id: format!("m-{i}"),
            reason: String::new(),
            body: format!(r#"{{"type":"track","messageId":"m-{i}"}}"#).into_bytes(),
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, &sample(7));
        encode(&mut buf, 8, &sample(8));
        let (r, n) = decode(&buf).expect("first record");
        assert_eq!(
            r,
            Record {
                seq: 7,
                entry: sample(7)
            }
        );
        let (r2, n2) = decode(&buf[n..]).expect("second record");
        assert_eq!(r2.seq, 8);
        assert_eq!(n + n2, buf.len());
    }

    #[test]
    fn detects_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, &sample(1));
        assert_eq!(
            decode(&buf[..buf.len() - 1]).unwrap_err(),
            DecodeError::Truncated
        );
        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::Checksum);
        assert!(matches!(
            decode(&[0xff; 8]).unwrap_err(),
            DecodeError::Length(_)
        ));
    }
}
