//! FQL tokens (docs/mappings.md#tokens), checked against `@segment/fql-ts`'s lexer. We accept
//! every spelling Segment reads the obvious way (`type="track"`, `properties.x <10`) and
//! refuse the ones it misreads:
//! - `!=`, `<=` and `>=` must be followed by whitespace, `,`, `)` or the end: Segment reads
//!   `x <=10` as `x < "="` and cannot read `type!="a"` at all;
//! - `and`/`or` must be followed by whitespace, `,`, `)` or the end (`a or(b)` loses its `or`);
//! - so must a string or a number (`type="track"and x` loses everything after the string);
//! - a path segment may not start with a digit or `-`, end the path as a bare `and`/`or`/
//!   `null`, or hold an escaped `.`, `[` or `]`: Segment splits the path there;
//! - `\r` is an invalid character.

use super::FqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A dotted identifier with escapes resolved: `properties.product 1.price`.
    Ident(Vec<String>),
    Str(String),
    /// A single-quoted string; Segment keeps its quotes, so it never matches. Rejected.
    SingleQuoted(String),
    Number(f64),
    Op(&'static str),
    Not,
    And,
    Or,
    Null,
    LParen,
    RParen,
    Comma,
}

/// fql-ts refuses a string, name or number once it reaches this many UTF-16 units.
const MAX_LEN: usize = 100_000;

pub fn lex(src: &str) -> Result<Vec<Tok>, FqlError> {
    let s: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => push(&mut out, &mut i, Tok::LParen),
            ')' => push(&mut out, &mut i, Tok::RParen),
            ',' => push(&mut out, &mut i, Tok::Comma),
            '[' | ']' => return Err(err(i, "array indexes ([0]) are not supported in FQL paths")),
            '"' | '\'' => i = lex_string(&s, i, &mut out)?,
            '=' | '<' | '>' | '!' => i = lex_operator(&s, i, &mut out)?,
            '-' | '+' | '0'..='9' => i = lex_number(&s, i, &mut out)?,
            c if c.is_ascii_alphabetic() || c == '_' || c == '\\' => {
                i = lex_ident(&s, i, &mut out)?
            }
            '\r' => return Err(err(i, "'\\r' is not allowed; use spaces or newlines")),
            other => return Err(err(i, &format!("unexpected character {other:?}"))),
        }
    }
    Ok(out)
}

fn push(out: &mut Vec<Tok>, i: &mut usize, t: Tok) {
    out.push(t);
    *i += 1;
}

fn err(at: usize, msg: &str) -> FqlError {
    FqlError(format!("{msg} at character {}", at + 1))
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn spaced(s: &[char], at: usize) -> bool {
    at >= s.len() || matches!(s[at], ' ' | '\t' | '\n')
}

/// fql-ts's terminator: whitespace, the end, `,`, `)` or `]`.
fn terminated(s: &[char], at: usize) -> bool {
    spaced(s, at) || matches!(s[at], ',' | ')' | ']')
}

fn lex_string(s: &[char], i: usize, out: &mut Vec<Tok>) -> Result<usize, FqlError> {
    let quote = s[i];
    let end = s[i + 1..]
        .iter()
        .position(|&x| x == quote)
        .ok_or_else(|| err(i, "unterminated string"))?;
    let text: String = s[i + 1..i + 1 + end].iter().collect();
    if utf16_len(&text) >= MAX_LEN {
        return Err(err(i, "a string must be shorter than 100000 characters"));
    }
    let after = i + end + 2;
    // (`\r` gets its own error from `lex`.)
    if !terminated(s, after) && s[after] != '\r' {
        return Err(err(
            after,
            "a string must be followed by a space, ')' or ',' (Segment drops or misreads what follows it: `type=\"track\"and x` reads as `type=\"track\"`)",
        ));
    }
    out.push(if quote == '"' {
        Tok::Str(text)
    } else {
        Tok::SingleQuoted(text)
    });
    Ok(i + end + 2)
}

fn lex_operator(s: &[char], i: usize, out: &mut Vec<Tok>) -> Result<usize, FqlError> {
    let next = s.get(i + 1).copied();
    let (tok, len) = match (s[i], next) {
        // `=` needs nothing after it: Segment reads `type="track"` correctly.
        ('=', _) => (Tok::Op("="), 1),
        ('!', Some('=')) => (Tok::Op("!="), 2),
        // `!` negates a function call: `!contains(...)`, `!match(...)`.
        ('!', Some(c)) if c.is_ascii_alphabetic() => (Tok::Not, 1),
        ('!', _) => {
            return Err(err(
                i,
                "'!' must be followed by contains(...) or match(...) (Segment ignores it elsewhere)",
            ));
        }
        ('<', Some('=')) => (Tok::Op("<="), 2),
        ('>', Some('=')) => (Tok::Op(">="), 2),
        // `<` and `>` need nothing after them: Segment reads `properties.x <10` correctly.
        ('<', _) => (Tok::Op("<"), 1),
        _ => (Tok::Op(">"), 1),
    };
    if len == 2 && !terminated(s, i + len) {
        let op: String = s[i..i + 2].iter().collect();
        let misread = if op == "!=" {
            "Segment cannot read it otherwise"
        } else {
            "Segment reads it as the operator '<' or '>' followed by '='"
        };
        return Err(err(i, &format!("put a space after {op} ({misread})")));
    }
    out.push(tok);
    Ok(i + len)
}

fn lex_number(s: &[char], i: usize, out: &mut Vec<Tok>) -> Result<usize, FqlError> {
    let mut j = i + 1;
    while j < s.len() && (s[j].is_ascii_digit() || s[j] == '.') {
        j += 1;
    }
    let text: String = s[i..j].iter().collect();
    let ok = text.matches('.').count() <= 1
        && !text.ends_with('.')
        && text.len() < MAX_LEN
        && text.chars().any(|c| c.is_ascii_digit());
    let n: f64 = text
        .parse()
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| err(i, &format!("invalid number {text:?}")))?;
    if !terminated(s, j) {
        return Err(err(
            j,
            "a number must be followed by a space, ')' or ',' (Segment drops what follows it)",
        ));
    }
    out.push(Tok::Number(n));
    Ok(j)
}

/// One segment of a dotted name, with what fql-ts would make of it.
#[derive(Default)]
struct Segment {
    text: String,
    /// The first character was written with a backslash.
    escaped_start: bool,
    /// An escaped `.`, `[` or `]`, which Segment's path lookup splits on anyway.
    escaped_separator: bool,
    /// The text's length in UTF-16 units, as fql-ts counts it.
    units: usize,
}

impl Segment {
    fn push(&mut self, c: char) {
        self.text.push(c);
        self.units += c.len_utf16();
    }

    fn units(&self) -> usize {
        self.units
    }
}

fn lex_ident(s: &[char], i: usize, out: &mut Vec<Tok>) -> Result<usize, FqlError> {
    let mut parts: Vec<Segment> = Vec::new();
    let mut cur = Segment::default();
    let mut j = i;
    while j < s.len() {
        match s[j] {
            '\\' => {
                let next = *s.get(j + 1).ok_or_else(|| err(j, "'\\' at the end"))?;
                cur.escaped_start |= cur.text.is_empty();
                cur.escaped_separator |= matches!(next, '.' | '[' | ']');
                cur.push(next);
                j += 2;
            }
            '.' => {
                if cur.text.is_empty() {
                    return Err(err(j, "empty path segment"));
                }
                parts.push(std::mem::take(&mut cur));
                j += 1;
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                cur.push(c);
                j += 1;
            }
            _ => break,
        }
        if cur.units() >= MAX_LEN {
            return Err(err(i, "a name must be shorter than 100000 characters"));
        }
    }
    if cur.text.is_empty() {
        return Err(err(j, "a path cannot end with '.'"));
    }
    parts.push(cur);
    if !(spaced(s, j) || matches!(s[j], ',' | ')' | '(' | '[' | '=' | '!')) {
        let hint = match s[j] {
            '<' | '>' => " (put a space before it: Segment misreads `x<10`)",
            '"' | '\'' => " (a quote inside a string cannot be escaped in FQL)",
            _ => "",
        };
        return Err(err(j, &format!("unexpected {:?} after a name{hint}", s[j])));
    }
    if parts.len() == 1
        && !parts[0].escaped_start
        && let Some(t) = keyword(&parts[0].text, s, j)?
    {
        out.push(t);
        return Ok(j);
    }
    check_path(&parts, terminated(s, j)).map_err(|m| err(i, &m))?;
    out.push(Tok::Ident(parts.into_iter().map(|p| p.text).collect()));
    Ok(j)
}

/// `and`, `or` and `null` are keywords only when a terminator follows, as in fql-ts.
fn keyword(word: &str, s: &[char], j: usize) -> Result<Option<Tok>, FqlError> {
    let t = match word {
        "and" => Tok::And,
        "or" => Tok::Or,
        "null" => Tok::Null,
        _ => return Ok(None),
    };
    if terminated(s, j) {
        return Ok(Some(t));
    }
    if t == Tok::Null {
        return Ok(None);
    }
    Err(err(
        j,
        &format!("put a space after '{word}' (Segment drops it otherwise)"),
    ))
}

/// Names that every JavaScript object has: Segment's lookup finds a function there when the
/// event lacks the key, so `properties.constructor != null` is always true.
const PROTOTYPE_NAMES: [&str; 12] = [
    "__proto__",
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
];

/// The segments after the root, checked for what fql-ts and `get` would split or misread.
fn check_path(parts: &[Segment], terminated: bool) -> Result<(), String> {
    for (n, p) in parts.iter().enumerate().skip(1) {
        let first = p.text.chars().next().unwrap_or(' ');
        if !p.escaped_start && (first.is_ascii_digit() || first == '-') {
            return Err(format!(
                "path segment {:?} starts with {first:?}: Segment reads it as a number; escape it (\\{first})",
                p.text
            ));
        }
        if p.escaped_separator {
            return Err(format!(
                "path segment {:?} escapes '.', '[' or ']': Segment splits the path there anyway",
                p.text
            ));
        }
        let last = n == parts.len() - 1;
        if last
            && terminated
            && !p.escaped_start
            && ["and", "or", "null"].contains(&p.text.as_str())
        {
            return Err(format!(
                "a path ending in {0:?} is read by Segment as the keyword {0}; escape it (\\{0})",
                p.text
            ));
        }
        if PROTOTYPE_NAMES.contains(&p.text.as_str()) {
            return Err(format!(
                "path segment {:?} names a JavaScript built-in that Segment finds on every object",
                p.text
            ));
        }
    }
    Ok(())
}
