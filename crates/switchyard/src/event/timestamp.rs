//! Lenient ISO-8601 parsing, our RFC 3339 output format, and Segment's clock-skew correction
//! (docs/wire.md#timestamps).
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
    let utc = PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .checked_to_offset(UtcOffset::UTC)?;
    // `9999-12-31T23:59:59-23:59` is in year 10000 in UTC and `0000-01-01T00:00:00+01:00`
    // in year -1: neither can be written in our format, so neither is an instant we accept.
    in_range(utc)
}

/// The instant, if its UTC year is one `format` can write (0000–9999).
fn in_range(t: OffsetDateTime) -> Option<OffsetDateTime> {
    (0..=9999).contains(&t.year()).then_some(t)
}

/// Formats as RFC 3339 UTC with milliseconds: `2024-01-01T00:04:50.000Z`. Years outside
/// 0000–9999 cannot come from our parser, our skew correction or a clock; they are clamped.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
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
/// `receivedAt`. A result outside the years 0000–9999 falls back to `receivedAt`.
pub fn correct(
    received_at: OffsetDateTime,
    sent_at: Option<OffsetDateTime>,
    original: Option<OffsetDateTime>,
) -> Corrected {
    let timestamp = match (original, sent_at) {
        (Some(orig), Some(sent)) => {
            let skew: Duration = sent - orig;
            received_at
                .checked_sub(skew)
                .and_then(in_range)
                .unwrap_or(received_at)
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
            // Out of range once in UTC (these panicked a request handler once).
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59-01:00",
            "0000-01-01T00:00:00+00:01",
            "0000-01-01T00:00:00+23:59",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn skew_correction_worked_example() {
        // docs/wire.md#timestamps: the device clock was 4 min 50 s slow.
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

    #[test]
    fn the_edges_of_the_range_stay_exact() {
        assert_eq!(p("9999-12-31T23:59:59.999Z"), "9999-12-31T23:59:59.999Z");
        assert_eq!(p("9999-12-31T23:59:59+01:00"), "9999-12-31T22:59:59.000Z");
        assert_eq!(p("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00.000Z");
        assert_eq!(p("0000-01-01T00:00:00-01:00"), "0000-01-01T01:00:00.000Z");
    }

    #[test]
    fn skew_correction_never_leaves_the_range() {
        let rx = parse("2024-01-01T00:00:00Z").unwrap();
        // The client clock claims to be almost 10,000 years fast / slow.
        for (sent, orig) in [
            ("9999-12-31T00:00:00Z", "0000-01-01T00:00:00Z"),
            ("0000-01-01T00:00:00Z", "9999-12-31T00:00:00Z"),
        ] {
            let c = correct(rx, parse(sent), parse(orig));
            assert_eq!(c.timestamp, rx, "{sent} {orig}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }

        /// Whatever parses formats back to the same instant (at millisecond precision).
        #[test]
        fn parsed_instants_are_exact(
            y in 0i32..=9999, mo in 1u8..=12, d in 1u8..=28, h in 0u8..24, mi in 0u8..60,
            oh in -23i8..=23, om in 0i8..60,
        ) {
            let sign = if oh < 0 { '-' } else { '+' };
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00{sign}{:02}:{om:02}", oh.unsigned_abs());
            if let Some(t) = parse(&text) {
                let local = PrimitiveDateTime::new(
                    Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d).unwrap(),
                    Time::from_hms(h, mi, 0).unwrap(),
                );
                let offset = (i32::from(oh.unsigned_abs()) * 3600 + i32::from(om) * 60)
                    * if oh < 0 { -1 } else { 1 };
                let want = local.assume_utc() - Duration::seconds(i64::from(offset));
                prop_assert_eq!(t, want);
                prop_assert_eq!(parse(&format(t)), Some(t));
            }
        }

        /// Any skew keeps the corrected timestamp formattable.
        #[test]
        fn skew_is_bounded(a in any::<i64>(), b in any::<i64>()) {
            let at = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms % 250_000_000_000_000) * 1_000_000).ok().and_then(in_range);
            let rx = OffsetDateTime::UNIX_EPOCH;
            let c = correct(rx, at(a), at(b));
            prop_assert!((0..=9999).contains(&c.timestamp.year()));
        }

        #[test]
        fn format_round_trips(ms in -2_000_000_000_000i64..4_000_000_000_000i64) {
            let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms);
            prop_assert_eq!(parse(&format(t)), Some(t));
        }
    }
}
