//! Parsing of the human units used in the config file: durations (`250ms`, `1h30m`, `7d`)
//! and sizes (`512KiB`, `10GiB`). Both are strict: an integer followed by a unit, with
//! durations allowed to chain several such parts in decreasing order.

use std::time::Duration;

/// Parses `250ms`, `10s`, `5m`, `4h`, `7d` and combinations such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bad =
        || format!("invalid duration {text:?}: expected e.g. 250ms, 10s, 5m, 4h, 7d or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let rank = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        // Units must strictly decrease: `1h30m` is fine, `30m1h` and `1h1h` are not.
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        let part = number.checked_mul(UNITS[rank].1).ok_or_else(bad)?;
        total_ms = total_ms.checked_add(part).ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses `512KiB`, `128MiB`, `10GiB`, `1TiB` or a plain byte count such as `4096` / `4096B`.
/// Decimal units (`KB`, `MB`, `GB`) are accepted and mean powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?}: expected e.g. 512KiB, 128MiB or 10GiB");
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let number: u64 = text[..digits].parse().map_err(|_| bad())?;
    let factor: u64 = match &text[digits..] {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            "10",
            "s",
            "1x",
            "30m1h",
            "1h1h",
            "-1s",
            "1.5s",
            "10 s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        for bad in ["", "KiB", "1kib", "1.5GiB", "-1B", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
