//! The FQL abstract syntax tree: a group of conditions joined by one conjunction.

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Group { conj: Conj, children: Vec<Expr> },
    Cond(Cond),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conj {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub field: Field,
    pub op: Op,
    /// Written as contains()/match(): matters only for the parenthesis check.
    pub from_function: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Type,
    Event,
    Name,
    UserId,
    Properties(Vec<String>),
    Traits(Vec<String>),
    Context(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(String),
    Ne(String),
    NumEq(f64),
    NumNe(f64),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
    Contains(String),
    NotContains(String),
    StartsWith(String),
    NotStartsWith(String),
    EndsWith(String),
    NotEndsWith(String),
    Exists,
    NotExists,
    IsTrue,
    IsFalse,
}
