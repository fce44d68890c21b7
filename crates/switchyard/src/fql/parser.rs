//! FQL syntax → AST (docs/mappings.md#syntax), strict at config time: unknown roots, single-quoted
//! strings, dangling conjunctions, `and` mixed with `or` at one level, nested parentheses,
//! and a function call followed by more items inside parentheses (which Segment misreads)
//! are all errors. What we accept means exactly what it means in Segment.

use super::ast::{Cond, Conj, Expr, Field, Op};
use super::lexer::Tok;
use super::{FqlError, js_number_string};

pub fn parse(tokens: &[Tok]) -> Result<Expr, FqlError> {
    if tokens.is_empty() {
        return Err(FqlError("the condition is empty".into()));
    }
    let mut p = Parser { t: tokens, i: 0 };
    let expr = p.group(false)?;
    if p.i < tokens.len() {
        return Err(FqlError(format!(
            "unexpected {} after the condition",
            describe(&tokens[p.i])
        )));
    }
    Ok(expr)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(p) => format!("name {:?}", p.join(".")),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::SingleQuoted(s) => format!("'{s}'"),
        Tok::Number(n) => format!("number {}", js_number_string(*n)),
        Tok::Op(o) => format!("operator {o}"),
        Tok::Not => "'!'".into(),
        Tok::And => "'and'".into(),
        Tok::Or => "'or'".into(),
        Tok::Null => "null".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn next(&mut self, what: &str) -> Result<&Tok, FqlError> {
        let t = self
            .t
            .get(self.i)
            .ok_or_else(|| FqlError(format!("expected {what}, found the end")))?;
        self.i += 1;
        Ok(t)
    }

    /// `item { conj item }`, one conjunction per level.
    fn group(&mut self, nested: bool) -> Result<Expr, FqlError> {
        let mut children = vec![self.item(nested)?];
        let mut conj: Option<Conj> = None;
        while let Some(t @ (Tok::And | Tok::Or)) = self.peek() {
            let this = if *t == Tok::And { Conj::And } else { Conj::Or };
            if conj.is_some_and(|c| c != this) {
                return Err(FqlError("'and' and 'or' are mixed at one level: Segment applies the last one to the whole group; add parentheses".into()));
            }
            conj = Some(this);
            self.i += 1;
            if matches!(self.peek(), None | Some(Tok::RParen)) {
                return Err(FqlError(
                    "the condition ends with a dangling 'and'/'or'".into(),
                ));
            }
            children.push(self.item(nested)?);
        }
        // Segment ends a parenthesised group at the first ')', even a function's own.
        if nested
            && children.len() > 1
            && children[..children.len() - 1]
                .iter()
                .any(|c| matches!(c, Expr::Cond(c) if c.from_function))
        {
            return Err(FqlError("inside parentheses, a contains()/match() call must be the last item: Segment misreads what follows it".into()));
        }
        Ok(Expr::Group {
            conj: conj.unwrap_or(Conj::And),
            children,
        })
    }

    fn item(&mut self, nested: bool) -> Result<Expr, FqlError> {
        match self.next("a condition")?.clone() {
            Tok::LParen => {
                if nested {
                    return Err(FqlError(
                        "nested parentheses are not supported by Segment's FQL".into(),
                    ));
                }
                let inner = self.group(true)?;
                match self.next("')'")? {
                    Tok::RParen => Ok(inner),
                    other => Err(FqlError(format!("expected ')', found {}", describe(other)))),
                }
            }
            Tok::Not => {
                let Tok::Ident(name) = self.next("contains or match")?.clone() else {
                    return Err(FqlError(
                        "'!' must be followed by contains(...) or match(...)".into(),
                    ));
                };
                self.function(&name, true)
            }
            Tok::Ident(name) if matches!(self.peek(), Some(Tok::LParen)) => {
                self.function(&name, false)
            }
            Tok::Ident(name) => self.comparison(&name),
            other => Err(FqlError(format!(
                "expected a condition, found {}",
                describe(&other)
            ))),
        }
    }

    fn comparison(&mut self, name: &[String]) -> Result<Expr, FqlError> {
        let field = field(name)?;
        let op = match self.next("an operator")? {
            Tok::Op(o) => *o,
            other => {
                return Err(FqlError(format!(
                    "expected an operator (= != < <= > >=), found {}",
                    describe(other)
                )));
            }
        };
        let value = self.next("a value")?.clone();
        let op = rewrite(&field, op, &value)?;
        Ok(Expr::Cond(Cond {
            field,
            op,
            from_function: false,
        }))
    }

    fn function(&mut self, name: &[String], negated: bool) -> Result<Expr, FqlError> {
        let fname = name.join(".");
        if fname != "contains" && fname != "match" {
            return Err(FqlError(format!(
                "unknown function {fname:?}; expected contains or match"
            )));
        }
        self.expect(Tok::LParen, "'('")?;
        let Tok::Ident(arg) = self.next("a field")?.clone() else {
            return Err(FqlError(format!("{fname}() takes a field first")));
        };
        let field = field(&arg)?;
        if field == Field::Type {
            return Err(FqlError(format!("{fname}() does not take type")));
        }
        self.expect(Tok::Comma, "','")?;
        let pattern = self.function_value(&fname)?;
        self.expect(Tok::RParen, "')'")?;
        let op = if fname == "contains" {
            if negated {
                Op::NotContains(pattern)
            } else {
                Op::Contains(pattern)
            }
        } else {
            match_op(&pattern, negated)?
        };
        Ok(Expr::Cond(Cond {
            field,
            op,
            from_function: true,
        }))
    }

    /// The second argument: a double-quoted string; for contains() also a number or
    /// true/false, which Segment compares as their text (`5` → "5").
    fn function_value(&mut self, fname: &str) -> Result<String, FqlError> {
        match self.next("a string")?.clone() {
            Tok::Str(s) => Ok(s),
            Tok::SingleQuoted(_) => Err(single_quoted()),
            Tok::Number(n) if fname == "contains" => Ok(js_number_string(n)),
            Tok::Ident(w) if fname == "contains" && w.len() == 1 && is_bool(&w[0]) => {
                Ok(w[0].clone())
            }
            other => Err(FqlError(format!(
                "{fname}() takes a double-quoted string, found {}",
                describe(&other)
            ))),
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), FqlError> {
        let got = self.next(what)?;
        if *got == want {
            Ok(())
        } else {
            Err(FqlError(format!(
                "expected {what}, found {}",
                describe(got)
            )))
        }
    }
}

/// A quoted number that JavaScript's `Number()` and Rust read alike (`"5"`, `"-1.5"`, `"1e3"`).
fn numeric_text(s: &str) -> Option<f64> {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    s.parse::<f64>().ok().filter(|n| plain && n.is_finite())
}

fn is_bool(w: &str) -> bool {
    w == "true" || w == "false"
}

/// `match(x, "X*")` is starts-with and `match(x, "*X")` ends-with. Segment reads any other
/// pattern as ends-with its text minus the first character, or starts-with up to a last
/// `*` (`"*a*"` → starts with `*a`), so those are refused.
fn match_op(pattern: &str, negated: bool) -> Result<Op, FqlError> {
    let plain = |x: &str| !x.contains('*');
    if let Some(prefix) = pattern.strip_suffix('*').filter(|p| plain(p)) {
        let p = prefix.to_owned();
        return Ok(if negated {
            Op::NotStartsWith(p)
        } else {
            Op::StartsWith(p)
        });
    }
    if let Some(suffix) = pattern.strip_prefix('*').filter(|p| plain(p)) {
        let p = suffix.to_owned();
        return Ok(if negated {
            Op::NotEndsWith(p)
        } else {
            Op::EndsWith(p)
        });
    }
    Err(FqlError(format!(
        "match() needs a pattern like \"X*\" or \"*X\" with one '*', got {pattern:?} (Segment reads other patterns as something else)"
    )))
}

fn single_quoted() -> FqlError {
    FqlError("strings must use double quotes: Segment keeps single quotes as part of the value, so it never matches".into())
}

fn field(name: &[String]) -> Result<Field, FqlError> {
    let root = name[0].as_str();
    let rest = || name[1..].to_vec();
    let f = match (root, name.len()) {
        ("type", 1) => Field::Type,
        ("event", 1) => Field::Event,
        ("name", 1) => Field::Name,
        ("userId", 1) => Field::UserId,
        ("properties", n) if n > 1 => Field::Properties(rest()),
        ("traits", n) if n > 1 => Field::Traits(rest()),
        ("context", n) if n > 1 => Field::Context(rest()),
        _ => {
            return Err(FqlError(format!(
                "unknown field {:?}: use type, event, name, userId, or properties./traits./context. followed by a path (Segment silently ignores other fields)",
                name.join(".")
            )));
        }
    };
    Ok(f)
}

/// The special forms of docs/mappings.md#syntax: null → exists/not_exists, booleans →
/// is_true/is_false, numbers → number comparisons on properties/traits/context.
fn rewrite(field: &Field, op: &str, value: &Tok) -> Result<Op, FqlError> {
    let nested = matches!(
        field,
        Field::Properties(_) | Field::Traits(_) | Field::Context(_)
    );
    let text_field = matches!(field, Field::Type | Field::Event);
    let bool_field = nested || *field == Field::UserId;
    let ordering = |n: f64| match op {
        "<" => Ok(Op::Lt(n)),
        "<=" => Ok(Op::Le(n)),
        ">" => Ok(Op::Gt(n)),
        ">=" => Ok(Op::Ge(n)),
        _ => Err(FqlError(format!("operator {op} cannot be used here"))),
    };
    let eq = |s: String| match op {
        "=" => Ok(Op::Eq(s)),
        "!=" => Ok(Op::Ne(s)),
        other => Err(FqlError(format!(
            "{other} compares numbers; use a number value"
        ))),
    };
    match value {
        Tok::Str(s) if matches!(op, "=" | "!=") => eq(s.clone()),
        // Segment orders by `Number(value)`, so a quoted number reads as that number.
        Tok::Str(s) => numeric_text(s).map(ordering).unwrap_or_else(|| {
            Err(FqlError(format!(
                "{op} compares numbers; {s:?} is not a number"
            )))
        }),
        Tok::SingleQuoted(_) => Err(single_quoted()),
        Tok::Null if text_field => eq("null".into()),
        Tok::Null => match op {
            "=" => Ok(Op::NotExists),
            "!=" => Ok(Op::Exists),
            other => Err(FqlError(format!("{other} cannot compare with null"))),
        },
        Tok::Number(n) => match op {
            "=" if nested => Ok(Op::NumEq(*n)),
            "!=" if nested => Ok(Op::NumNe(*n)),
            "=" | "!=" => eq(js_number_string(*n)),
            _ => ordering(*n),
        },
        Tok::Ident(w) if w.len() == 1 && is_bool(&w[0]) => {
            let t = w[0] == "true";
            match op {
                "=" if bool_field => Ok(if t { Op::IsTrue } else { Op::IsFalse }),
                "=" | "!=" if !bool_field => eq(w[0].clone()),
                other => Err(FqlError(format!(
                    "{other} {} is not supported; use = true or = false",
                    w[0]
                ))),
            }
        }
        other => Err(FqlError(format!(
            "expected a value (a \"string\", a number, true, false or null), found {}",
            describe(other)
        ))),
    }
}
