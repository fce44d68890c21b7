//! Reading libpq connection strings (URL or key=value): the TLS parameters Switchyard
//! handles itself (`sslmode`, `sslrootcert`) and those it refuses are taken out; the rest
//! goes to tokio-postgres.

use super::ConnectError;

/// libpq TLS parameters Switchyard does not implement: refused by name rather than passed
/// to tokio-postgres, which would call the whole string invalid.
pub(super) const UNSUPPORTED: [&str; 9] = [
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "sslnegotiation",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
];

/// The value of `key` among the taken parameters; an error if it is given twice, differently.
pub(super) fn one<'a>(
    taken: &'a [(String, String)],
    key: &'static str,
) -> Result<Option<&'a str>, ConnectError> {
    let mut values = taken
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.any(|v| Some(v) != first) {
        return Err(ConnectError::Repeated(key));
    }
    Ok(first)
}

/// Takes the parameters named `keys` out of a libpq connection string (URL query or
/// key=value), returning the rest and the taken `(key, value)` pairs, values decoded.
pub(super) fn take_params(s: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let prefix = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|p| s.starts_with(p));
    match prefix {
        Some(p) => take_from_url(s, p.len(), keys),
        None => take_from_pairs(s, keys),
    }
}

fn take_from_url(s: &str, after_scheme: usize, keys: &[&str]) -> (String, Vec<(String, String)>) {
    // As tokio-postgres reads it: credentials end at the first `@`, the query starts at the
    // first `?` after them.
    let rest = &s[after_scheme..];
    let from = after_scheme + rest.find('@').map_or(0, |i| i + 1);
    let Some(q) = s[from..].find('?').map(|i| from + i) else {
        return (s.to_owned(), Vec::new());
    };
    let decode = |x: &str| {
        percent_encoding::percent_decode_str(x)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    for pair in s[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if keys.contains(&decode(k).as_str()) {
            taken.push((decode(k), decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let mut out = s[..q].to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    (out, taken)
}

/// key=value form: `key = value` pairs separated by spaces; a value may be quoted with `'`,
/// and `\` escapes the next character.
fn take_from_pairs(s: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let b = s.as_bytes();
    let (mut out, mut taken) = (String::new(), Vec::new());
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let key_start = skip_space(b, i);
        let mut j = key_start;
        while j < b.len() && b[j] != b'=' && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        let key = &s[key_start..j];
        j = skip_space(b, j);
        if j >= b.len() || b[j] != b'=' {
            // Not a pair tokio-postgres would accept: leave the rest for it to refuse.
            out.push_str(&s[start..]);
            break;
        }
        let (value, end) = read_value(s, skip_space(b, j + 1));
        if keys.contains(&key) {
            taken.push((key.to_owned(), value));
        } else {
            out.push_str(&s[start..end]);
        }
        i = end;
    }
    (out.trim().to_owned(), taken)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// A value from `i`: quoted or bare; returns it unescaped and where it ends.
fn read_value(s: &str, i: usize) -> (String, usize) {
    let quoted = s[i..].starts_with('\'');
    let mut value = String::new();
    let mut chars = s[i..].char_indices().skip(usize::from(quoted));
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            '\'' if quoted => return (value, i + at + 1),
            c if c.is_whitespace() && !quoted => return (value, i + at),
            c => value.push(c),
        }
    }
    (value, s.len())
}
