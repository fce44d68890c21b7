//! A generated sweep over fields × operators × values × spacing, functions and groupings.
//! Every condition Switchyard accepts must match exactly the events Segment matches; a
//! spelling Switchyard refuses while accepting its spaced form (`a <= 1` for `a <=1`) must
//! be one Segment reads differently from that spaced form.

use std::collections::HashMap;

use crate::fql::{events, segment, switchyard};

const FIELDS: [&str; 18] = [
    "type",
    "event",
    "name",
    "userId",
    "properties.price",
    "properties.name",
    "properties.flag",
    "properties.zero.x",
    "properties.s.length",
    "properties.nested.deep",
    "properties.missing",
    "properties.nothing",
    "traits.test",
    "context.foo",
    "properties.and",
    r"properties.\0",
    "properties.0",
    "properties.constructor",
];
const OPS: [&str; 6] = ["=", "!=", "<", "<=", ">", ">="];
const VALUES: [&str; 15] = [
    r#""track""#,
    r#""Product Added""#,
    r#""Home""#,
    r#""120""#,
    "120",
    "-0",
    "99.5",
    "true",
    "false",
    "null",
    "'track'",
    "Foo",
    "0.0000001",
    "12345678901234567890",
    r#""""#,
];
const SPACINGS: [&str; 4] = [" {op} ", "{op}", " {op}", "{op} "];

/// Each generated condition, with its canonical (spaced) form when it has one.
fn comparisons() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in FIELDS {
        for op in OPS {
            for v in VALUES {
                let canonical = format!("{f} {op} {v}");
                for sp in SPACINGS {
                    let c = format!("{f}{}{v}", sp.replace("{op}", op));
                    out.push((c, canonical.clone()));
                }
            }
        }
    }
    out
}

fn functions() -> Vec<(String, String)> {
    let fields = [
        "event",
        "name",
        "userId",
        "properties.name",
        "context.foo",
        "type",
    ];
    let values = [
        r#""Prod""#,
        r#""Prod*""#,
        r#""*ded""#,
        r#""*o*""#,
        r#""X""#,
        "4",
        "true",
        "null",
        "'Prod'",
        r#""*""#,
        r#""""#,
    ];
    let mut out = Vec::new();
    for func in ["contains", "!contains", "match", "!match"] {
        for f in fields {
            for v in values {
                let canonical = format!("{func}({f}, {v})");
                for c in [
                    canonical.clone(),
                    format!("{func}({f},{v})"),
                    format!("{func}( {f} , {v} )"),
                    format!("{func} ({f}, {v})"),
                ] {
                    out.push((c, canonical.clone()));
                }
            }
        }
    }
    out
}

fn groupings() -> Vec<(String, String)> {
    let (a, b, c) = (
        r#"type = "track""#,
        r#"event = "Old Product""#,
        r#"userId = "42""#,
    );
    let f = r#"contains(event, "Add")"#;
    let templates = [
        "A and B",
        "A or B",
        "A and B or C",
        "A or B and C",
        "(A or B) and C",
        "A and (B or C)",
        "(A) and (B)",
        "((A))",
        "A and",
        "or A",
        "A B",
        "A or(B)",
        "(A)and B",
        "(A)or B",
        "A and (F or B)",
        "A and (B or F)",
        "(F) or B",
        "(F)or B",
        "F and B",
        "!F or A",
        "A and (B or !F)",
        "(A or B) and (C or F)",
        "A and and B",
        "A, B",
        "A )",
        "(A",
        // No space between a value and what follows it.
        "Aand B",
        "Aor B",
        "A or Band C",
        "Fand B",
        "(A)and(B)",
    ];
    templates
        .iter()
        .map(|t| {
            let s = t
                .replace('A', a)
                .replace('B', b)
                .replace('C', c)
                .replace('F', f);
            (s.clone(), s)
        })
        .collect()
}

#[test]
fn accepted_conditions_match_what_segment_matches() {
    let events = events();
    let mut cases = comparisons();
    cases.extend(functions());
    cases.extend(groupings());
    let mut conditions: Vec<String> = cases.iter().map(|(c, _)| c.clone()).collect();
    conditions.extend(cases.iter().map(|(_, canonical)| canonical.clone()));
    conditions.sort();
    conditions.dedup();
    let Some(answers) = segment(&conditions, &events) else {
        return;
    };
    let seg: HashMap<&str, _> = conditions.iter().map(String::as_str).zip(answers).collect();
    let (mut accepted, mut refused) = (0, 0);
    for (c, canonical) in &cases {
        let s = &seg[c.as_str()];
        match switchyard(c, &events) {
            Ok(ours) => {
                accepted += 1;
                assert_eq!(
                    ours, s.results,
                    "{c:?}: Segment read {} ({:?})",
                    s.ast, s.error
                );
            }
            Err(e) => {
                refused += 1;
                if c == canonical || switchyard(canonical, &events).is_err() {
                    continue;
                }
                let spaced = &seg[canonical.as_str()];
                assert!(
                    s.error.is_some() || s.results != spaced.results || s.ast != spaced.ast,
                    "{c:?} is refused ({e}) but Segment reads it as {canonical:?}: {}",
                    s.ast
                );
            }
        }
    }
    eprintln!("{accepted} conditions agree with Segment; {refused} refused");
    assert!(
        accepted > 1000,
        "the sweep should exercise many accepted conditions"
    );
}
