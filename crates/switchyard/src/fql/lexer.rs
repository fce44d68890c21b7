//! FQL tokens (reference §4.2, §4.9). Stricter than Segment's lexer where Segment silently
//! misreads: an operator, `and`, `or` or `null` must be followed by whitespace or the end
//! (or `)` / `,` for `null`), and `\r` is an invalid character.

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

const MAX_STRING: usize = 100_000;

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
            '"' | '\'' => {
                let end = s[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or_else(|| err(i, "unterminated string"))?;
                let text: String = s[i + 1..i + 1 + end].iter().collect();
                if text.chars().count() > MAX_STRING {
                    return Err(err(i, "string is longer than 100000 characters"));
                }
                out.push(if c == '"' {
                    Tok::Str(text)
                } else {
                    Tok::SingleQuoted(text)
                });
                i += end + 2;
            }
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

fn spaced(s: &[char], at: usize) -> bool {
    at >= s.len() || matches!(s[at], ' ' | '\t' | '\n')
}

fn lex_operator(s: &[char], i: usize, out: &mut Vec<Tok>) -> Result<usize, FqlError> {
    let two = |c: char| s.get(i + 1) == Some(&c);
    let (tok, len) = match s[i] {
        '!' if two('=') => (Tok::Op("!="), 2),
        '!' => {
            // `!` negates a function call: `!contains(...)`, `!match(...)`.
            if s.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
                out.push(Tok::Not);
                return Ok(i + 1);
            }
            return Err(err(
                i,
                "'!' must be followed by contains(...) or match(...)",
            ));
        }
        '<' if two('=') => (Tok::Op("<="), 2),
        '>' if two('=') => (Tok::Op(">="), 2),
        '<' => (Tok::Op("<"), 1),
        '>' => (Tok::Op(">"), 1),
        _ => (Tok::Op("="), 1),
    };
    if !spaced(s, i + len) {
        return Err(err(
            i,
            "put a space after the operator (Segment misreads it otherwise)",
        ));
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
        && text.chars().any(|c| c.is_ascii_digit());
    let n: f64 = text
        .parse()
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| err(i, &format!("invalid number {text:?}")))?;
    if !(spaced(s, j) || matches!(s.get(j), Some(')') | Some(','))) {
        return Err(err(j, "a number must be followed by a space, ')' or ','"));
    }
    out.push(Tok::Number(n));
    Ok(j)
}

fn lex_ident(s: &[char], i: usize, out: &mut Vec<Tok>) -> Result<usize, FqlError> {
    // The segment being read, then the finished ones.
    let mut cur = String::new();
    let mut parts: Vec<String> = Vec::new();
    let mut j = i;
    while j < s.len() {
        match s[j] {
            '\\' => {
                let next = *s.get(j + 1).ok_or_else(|| err(j, "'\\' at the end"))?;
                cur.push(next);
                j += 2;
            }
            '.' => {
                if cur.is_empty() {
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
    }
    if cur.is_empty() {
        return Err(err(j, "a path cannot end with '.'"));
    }
    parts.push(cur);
    if !(spaced(s, j) || matches!(s[j], ',' | ')' | '(' | '[' | '=' | '!')) {
        return Err(err(j, &format!("unexpected {:?} after a name", s[j])));
    }
    let word = if parts.len() == 1 {
        parts[0].as_str()
    } else {
        ""
    };
    let keyword = match word {
        "and" => Some(Tok::And),
        "or" => Some(Tok::Or),
        "null" => Some(Tok::Null),
        _ => None,
    };
    match keyword {
        Some(t @ (Tok::And | Tok::Or)) if !spaced(s, j) => {
            let _ = t;
            Err(err(
                j,
                "put a space after and/or (Segment drops it otherwise)",
            ))
        }
        Some(t) => {
            out.push(t);
            Ok(j)
        }
        None => {
            out.push(Tok::Ident(parts));
            Ok(j)
        }
    }
}
