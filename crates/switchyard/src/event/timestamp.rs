//! Lenient ISO-8601 parsing, our RFC 3339 output format, and Segment's clock-skew correction
//! (reference/segment-compat.md §1.8).
//!
//! Real clients send many shapes: `2024-01-02T03:04:05.678Z` (JS), `...05.678+00:00` and
//! microseconds (Python), even `2015-2-02T00:30:08.276Z` (Segment's own docs). We accept all
//! of these and always emit `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses an ISO-8601 timestamp leniently. A missing zone means UTC; a date alone means
/// midnight UTC. Returns `None` for anything that is not a real instant.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    let mut p = Cursor {
        s: text.trim().as_bytes(),
        i: 0,
    };
    let year = p.number(4, 4)? as i32;
    p.expect(b'-')?;
    let month = Month::try_from(p.number(1, 2)? as u8).ok()?;
    p.expect(b'-')?;
    let day = p.number(1, 2)? as u8;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    if p.done() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    if !(p.eat(b'T') || p.eat(b't') || p.eat(b' ')) {
        return None;
    }
    let hour = p.number(1, 2)? as u8;
    p.expect(b':')?;
    let minute = p.number(2, 2)? as u8;
    let mut second = 0u8;
    let mut nanos = 0u32;
    if p.eat(b':') {
        second = p.number(2, 2)? as u8;
        if p.eat(b'.') || p.eat(b',') {
            nanos = p.fraction()?;
        }
    }
    // A leap second (:60) is folded into :59.999 rather than rejected.
    let (second, nanos) = if second == 60 {
        (59, 999_999_999)
    } else {
        (second, nanos)
    };
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    let offset = p.offset()?;
    if !p.done() {
        return None;
    }
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .to_offset(UtcOffset::UTC),
    )
}

/// Formats as RFC 3339 UTC with milliseconds: `2024-01-01T00:04:50.000Z`. Years outside
/// 0000–9999 cannot come from our parser or clock; they are clamped.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year().clamp(0, 9999) as u32);
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    put(20, 3, u32::from(t.millisecond()));
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&b).into_owned()
}

/// The timestamps stored with an event after skew correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrected {
    pub timestamp: OffsetDateTime,
    pub original: Option<OffsetDateTime>,
}

/// `timestamp := receivedAt - (sentAt - originalTimestamp)` when both client times are
/// known; the client timestamp alone when there is no `sentAt` (historical import); else
/// `receivedAt`. Arithmetic that would leave the representable range falls back to
/// `receivedAt`.
pub fn correct(
    received_at: OffsetDateTime,
    sent_at: Option<OffsetDateTime>,
    original: Option<OffsetDateTime>,
) -> Corrected {
    let timestamp = match (original, sent_at) {
        (Some(orig), Some(sent)) => {
            let skew: Duration = sent - orig;
            received_at.checked_sub(skew).unwrap_or(received_at)
        }
        (Some(orig), None) => orig,
        (None, _) => received_at,
    };
    Corrected {
        timestamp,
        original,
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i < self.s.len() && self.i - start < max && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        self.s[start..self.i].iter().try_fold(0u32, |acc, d| {
            acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
    }
    /// Fractional seconds: any number of digits, kept to nanosecond precision.
    fn fraction(&mut self) -> Option<u32> {
        let start = self.i;
        let mut nanos = 0u32;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            if self.i - start < 9 {
                nanos = nanos * 10 + u32::from(self.s[self.i] - b'0');
            }
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 {
            return None;
        }
        Some(nanos * 10u32.pow(9usize.saturating_sub(digits) as u32))
    }
    /// `Z`, `±HH:MM`, `±HHMM`, `±HH`, or nothing (UTC).
    fn offset(&mut self) -> Option<UtcOffset> {
        if self.done() {
            return Some(UtcOffset::UTC);
        }
        if self.eat(b'Z') || self.eat(b'z') {
            return Some(UtcOffset::UTC);
        }
        let sign: i8 = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = self.number(2, 2)? as i8;
        let minutes = if self.done() {
            0
        } else {
            self.eat(b':');
            self.number(2, 2)? as i8
        };
        UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> String {
        format(parse(s).unwrap_or_else(|| panic!("{s} should parse")))
    }

    #[test]
    fn client_shapes() {
        assert_eq!(p("2024-01-02T03:04:05.678Z"), "2024-01-02T03:04:05.678Z");
        assert_eq!(
            p("2026-11-22T04:18:16.688+00:00"),
            "2026-11-22T04:18:16.688Z"
        );
        assert_eq!(
            p("2026-11-22T04:18:16.688123+00:00"),
            "2026-11-22T04:18:16.688Z"
        );
        assert_eq!(p("2015-2-02T00:30:08.276Z"), "2015-02-02T00:30:08.276Z");
        assert_eq!(p("2024-01-02T03:04:05+02:00"), "2024-01-02T01:04:05.000Z");
        assert_eq!(p("2024-01-02T03:04:05-0530"), "2024-01-02T08:34:05.000Z");
        assert_eq!(p("2024-01-02 03:04:05"), "2024-01-02T03:04:05.000Z");
        assert_eq!(p("2024-01-02T03:04Z"), "2024-01-02T03:04:00.000Z");
        assert_eq!(p("2024-01-02"), "2024-01-02T00:00:00.000Z");
        assert_eq!(p("2016-12-31T23:59:60Z"), "2016-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_non_instants() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zjunk",
            "1700000000",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn skew_correction_worked_example() {
        // reference §1.8: the device clock was 4 min 50 s slow.
        let received = parse("2024-01-01T00:05:00.000Z").expect("valid");
        let c = correct(
            received,
            parse("2024-01-01T00:00:10.000Z"),
            parse("2024-01-01T00:00:00.000Z"),
        );
        assert_eq!(format(c.timestamp), "2024-01-01T00:04:50.000Z");
        assert_eq!(
            c.original.map(format).as_deref(),
            Some("2024-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn skew_branches() {
        let rx = parse("2024-01-01T00:05:00Z").unwrap();
        let orig = parse("2023-06-01T00:00:00Z").unwrap();
        assert_eq!(
            correct(rx, None, Some(orig)).timestamp,
            orig,
            "historical import keeps the client time"
        );
        assert_eq!(
            correct(rx, parse("2024-01-01T00:00:00Z"), None).timestamp,
            rx
        );
        assert_eq!(correct(rx, None, None).timestamp, rx);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn format_round_trips(ms in -2_000_000_000_000i64..4_000_000_000_000i64) {
            let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms);
            prop_assert_eq!(parse(&format(t)), Some(t));
        }
    }
}
