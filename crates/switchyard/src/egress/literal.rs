//! Reading addresses the way the network stack will: a URL host written as a number
//! (`127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`: the WHATWG URL parser and
//! getaddrinfo both read these as IPv4), and IPv6 addresses that carry an IPv4 address
//! (IPv4-mapped and -translated, IPv4-compatible, NAT64, 6to4, Teredo), which are judged as
//! the IPv4 address they reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address a URL host names without a DNS lookup: an IP literal in any spelling, or
/// `localhost` (and `*.localhost`, RFC 6761). `None` for a name DNS must resolve.
pub fn literal_host_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // The WHATWG parser percent-decodes a host before reading it as an address.
    let host = percent_decode(host)
        .unwrap_or_else(|| host.to_owned())
        .to_ascii_lowercase();
    let name = host.strip_suffix('.').unwrap_or(&host);
    if name == "localhost" || name.ends_with(".localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    ipv4_number(&host).map(IpAddr::V4)
}

/// The WHATWG IPv4 parser (also what `inet_aton` accepts): one to four dot-separated parts,
/// each decimal, octal (leading `0`) or hex (`0x`); the last part fills the remaining bytes.
fn ipv4_number(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let nums = host.split('.').map(number).collect::<Option<Vec<u64>>>()?;
    if nums.len() > 4 {
        return None;
    }
    let (last, init) = nums.split_last()?;
    let free_bytes = 4 - init.len() as u32;
    if init.iter().any(|n| *n > 255) || *last >= 1u64 << (8 * free_bytes) {
        return None;
    }
    let value = init
        .iter()
        .enumerate()
        .fold(*last, |v, (i, n)| v | n << (8 * (3 - i)));
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn number(part: &str) -> Option<u64> {
    let (digits, radix) = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
        None => (part, 10),
    };
    if part.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if digits.is_empty() {
        return Some(0); // `0x` alone is zero
    }
    u64::from_str_radix(digits, radix).ok()
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The IPv4 address an IPv6 address reaches, when it embeds one.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let join = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let low = join(s[6], s[7]);
    match s {
        // IPv4-mapped `::ffff:a.b.c.d` and IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765).
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0xffff, 0, ..] => Some(low),
        // IPv4-compatible `::a.b.c.d` (deprecated); `::` and `::1` are IPv6's own.
        [0, 0, 0, 0, 0, 0, ..] if !ip.is_unspecified() && !ip.is_loopback() => Some(low),
        // NAT64, the well-known prefix `64:ff9b::/96` (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        // 6to4 `2002:AABB:CCDD::/48` (RFC 3056).
        [0x2002, hi, lo, ..] => Some(join(hi, lo)),
        // Teredo `2001:0::/32`: the client's address, inverted, in the last 32 bits (RFC 4380).
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!u32::from(low))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<IpAddr> {
        Some(IpAddr::V4(s.parse().unwrap()))
    }

    #[test]
    fn every_spelling_of_an_ipv4_host() {
        for (host, want) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0X7F000001", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("0x7f.0.0.0x1", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("%31%32%37.0.0.1", "127.0.0.1"),
            ("0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("169.254.43518", "169.254.169.254"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("10.0x10000", "10.1.0.0"),
            ("localhost", "127.0.0.1"),
            ("LocalHost.", "127.0.0.1"),
            ("api.localhost", "127.0.0.1"),
            ("8.8.8.8", "8.8.8.8"),
        ] {
            assert_eq!(literal_host_ip(host), v4(want), "{host}");
        }
        for name in [
            "example.com",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "08.0.0.1",
            "0x1g",
            "1..1",
            "",
            "99999999999999999999999",
            "localhost.example",
            "%zz",
        ] {
            assert_eq!(literal_host_ip(name), None, "{name}");
        }
        assert_eq!(literal_host_ip("[::1]"), Some("::1".parse().unwrap()));
    }

    #[test]
    fn ipv6_forms_that_reach_ipv4() {
        for (v6, want) in [
            ("::ffff:127.0.0.1", Some("127.0.0.1")),
            ("::ffff:0:127.0.0.1", Some("127.0.0.1")),
            ("::127.0.0.1", Some("127.0.0.1")),
            ("::10.1.2.3", Some("10.1.2.3")),
            ("64:ff9b::7f00:1", Some("127.0.0.1")),
            ("64:ff9b::169.254.169.254", Some("169.254.169.254")),
            ("2002:7f00:1::", Some("127.0.0.1")),
            ("2002:a9fe:a9fe:1::5", Some("169.254.169.254")),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some("127.0.0.1")),
            ("::1", None),
            ("::", None),
            ("2606:4700::1111", None),
            ("64:ff9b:1::7f00:1", None),
        ] {
            let ip: Ipv6Addr = v6.parse().unwrap();
            assert_eq!(embedded_v4(ip), want.map(|w| w.parse().unwrap()), "{v6}");
        }
    }
}
