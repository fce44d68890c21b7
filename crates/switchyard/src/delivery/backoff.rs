//! Retry timing: exponential backoff with full jitter, never sooner than `Retry-After`.

use std::time::Duration;

/// Longest `Retry-After` we honour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Delay before attempt `attempt + 1`, after `attempt` failed ones (attempt ≥ 1).
/// `jitter` is uniform in [0, 1).
pub fn next_delay(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = initial.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX),
    );
    let cap = exp.min(max);
    let jittered = cap
        .mul_f64(jitter.clamp(0.0, 1.0))
        .max(Duration::from_millis(1));
    match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// `Retry-After`: delta seconds, or an HTTP date (RFC 7231 IMF-fixdate).
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64 - now_ms;
    Some(Duration::from_millis(ms.max(0) as u64).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_with_full_jitter_and_a_cap() {
        let s = Duration::from_secs;
        assert_eq!(
            next_delay(1, s(1), s(300), None, 0.999_999).as_millis(),
            999
        );
        assert_eq!(next_delay(4, s(1), s(300), None, 0.5), s(4));
        assert_eq!(
            next_delay(30, s(1), s(300), None, 0.5),
            s(150),
            "capped at max_backoff before jitter"
        );
        assert_eq!(next_delay(u32::MAX, s(1), s(300), None, 0.5), s(150));
        assert_eq!(
            next_delay(1, s(1), s(300), None, 0.0),
            Duration::from_millis(1)
        );
        assert_eq!(
            next_delay(1, s(1), s(300), Some(s(30)), 0.1),
            s(30),
            "never sooner than Retry-After"
        );
        assert_eq!(
            next_delay(1, s(1), s(300), Some(s(99_999)), 0.1),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = time::macros::datetime!(2015-10-21 07:28:00 UTC).unix_timestamp() * 1000;
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
