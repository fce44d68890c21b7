use serde_json::{Value, json};

use super::*;

fn m(fql: &str, event: &Value) -> bool {
    Fql::parse(fql)
        .unwrap_or_else(|e| panic!("{fql:?} should parse: {e}"))
        .matches(event)
}

fn rejects(fql: &str) -> String {
    Fql::parse(fql)
        .expect_err(&format!("{fql:?} should be rejected"))
        .0
}

fn ev() -> Value {
    json!({
        "type": "track", "event": "Product Added", "userId": "u1", "name": "Home",
        "properties": {"price": 120, "total": 600, "name": "Xylophone", "sku": "123", "flag": true, "off": false,
                       "nested": {"deep": "baz"}, "product 1": {"price": 5}, "list": [{"a": "first"}], "nothing": null},
        "traits": {"test": true, "name": "Ann"},
        "context": {"foo": "bar"}
    })
}

#[test]
fn reference_examples_parse_and_evaluate() {
    let e = ev();
    assert!(m(r#"type = "track""#, &e));
    assert!(m(r#"type = "track" or type = "identify""#, &e));
    assert!(!m(
        r#"type = "track" or type = "identify""#,
        &json!({"type": "page"})
    ));
    assert!(m(r#"event = "Product Added""#, &e));
    assert!(m("userId != null", &e));
    assert!(m(r#"context.foo = "bar""#, &e));
    assert!(m(r#"name = "Home""#, &e));
    assert!(!m("name = null", &e));
    assert!(m("name = null", &json!({"type": "page"})));
    assert!(m(r#"properties.nested.deep = "baz""#, &e));
    assert!(m("traits.test = true", &e));
    assert!(
        !m(r#"traits.test = "true""#, &e),
        "a quoted true is a string compare"
    );
    assert!(m(
        r#"type = "track" and (event = "Product Added" or event = "Order Completed")"#,
        &e
    ));
    assert!(m(
        r#"event = "Product Added" and properties.price >= 100"#,
        &e
    ));
    let two = r#"(event = "Product Added" and properties.price >= 100) or (event = "Order Completed" and properties.total >= 500)"#;
    assert!(m(two, &e));
    assert!(m(
        two,
        &json!({"event": "Order Completed", "properties": {"total": 500}})
    ));
    assert!(!m(
        two,
        &json!({"event": "Order Completed", "properties": {"total": 499}})
    ));
    assert!(m(r#"contains(event, "Added")"#, &e));
    assert!(!m(r#"!contains(event, "Added")"#, &e));
    assert!(m(
        r#"event = "Product Added" and match(properties.name, "X*")"#,
        &e
    ));
    assert!(m(r#"!match(event, "*X")"#, &e));
    assert!(m(r#"event = "Product Added" and traits.name != null"#, &e));
}

#[test]
fn reference_error_cases() {
    for bad in ["typo", "type", r#"type * "32456""#, r#""""#, ""] {
        rejects(bad);
    }
}

#[test]
fn every_operator() {
    let e = ev();
    // = and != are strict string comparisons; != is true when the field is missing.
    assert!(
        !m(
            r#"properties.sku = 123"#,
            &json!({"properties": {"sku": "123"}})
        ),
        "number_equals needs a JSON number"
    );
    assert!(m(r#"properties.sku = "123""#, &e));
    assert!(
        m(r#"properties.price != "120""#, &e),
        "120 is not the string \"120\""
    );
    assert!(m(r#"properties.missing != "x""#, &e));
    assert!(m(r#"event != "Other""#, &e));
    // numbers on properties/traits/context: number_equals / number_not_equals
    assert!(m("properties.price = 120", &e));
    assert!(m("properties.price != 121", &e));
    assert!(
        !m("properties.sku != 5", &e),
        "number_not_equals is false on a string"
    );
    assert!(!m("properties.missing != 5", &e));
    // numbers on type/event/name/userId are stringified
    assert!(m("userId = 42", &json!({"userId": "42"})));
    assert!(!m("userId = 42", &json!({"userId": 42})));
    // ordering only on JSON numbers
    assert!(m("properties.price > 100", &e) && m("properties.price >= 120", &e));
    assert!(m("properties.price < 121", &e) && m("properties.price <= 120", &e));
    assert!(!m("properties.price < 120", &e) && !m("properties.price > 120", &e));
    assert!(
        !m("properties.sku > 1", &e),
        "a numeric string never compares"
    );
    assert!(m("properties.price >= -1.5", &e));
    // contains / starts / ends and their negations: false on non-strings
    assert!(m(r#"contains(properties.name, "lop")"#, &e));
    assert!(m(r#"!contains(properties.name, "zzz")"#, &e));
    assert!(
        !m(r#"contains(properties.price, "1")"#, &e)
            && !m(r#"!contains(properties.price, "1")"#, &e)
    );
    assert!(
        m(r#"match(properties.name, "Xy*")"#, &e) && !m(r#"!match(properties.name, "Xy*")"#, &e)
    );
    assert!(
        m(r#"match(properties.name, "*phone")"#, &e) && m(r#"!match(properties.name, "*zzz")"#, &e)
    );
    assert!(!m(r#"!match(properties.missing, "*zzz")"#, &e));
    // exists / not_exists: null counts as missing
    assert!(
        m("properties.price != null", &e)
            && m("properties.nothing = null", &e)
            && m("properties.gone = null", &e)
    );
    // is_true / is_false: only JSON booleans
    assert!(m("properties.flag = true", &e) && m("properties.off = false", &e));
    assert!(!m("properties.flag = false", &e) && !m("properties.name = true", &e));
    assert!(!m(
        "traits.test = true",
        &json!({"traits": {"test": "true"}})
    ));
    // type/event compare null and true as strings
    assert!(
        m("event != null", &json!({"type": "page"})),
        "event != null compares with the string \"null\""
    );
    assert!(m("type = null", &json!({"type": "null"})));
    assert!(m("event = true", &json!({"event": "true"})));
    // paths: escaped characters and array indexes in the event
    assert!(m(r"properties.product\ 1.price = 5", &e));
    assert!(m(r#"properties.list.\0.a = "first""#, &e));
    // traits means the top-level traits, not context.traits
    assert!(!m(
        r#"traits.email = "a@b""#,
        &json!({"context": {"traits": {"email": "a@b"}}})
    ));
    // non-objects never match
    assert!(
        !Fql::parse(r#"type != "x""#)
            .unwrap()
            .matches(&json!("track"))
    );
}

#[test]
fn strict_rejections_name_the_problem() {
    assert!(rejects(r#"foo = "x""#).contains("unknown field"));
    assert!(rejects(r#"type = "track" and foo = "x""#).contains("unknown field"));
    assert!(rejects("event = 'X'").contains("double quotes"));
    assert!(rejects(r#"type = "track" and"#).contains("dangling"));
    assert!(rejects(r#"type = "a" and type = "b" or type = "c""#).contains("mixed"));
    assert!(rejects(r#"((type = "a"))"#).contains("nested parentheses"));
    assert!(rejects(r#"type!="track""#).contains("space after !="));
    assert!(rejects("properties.price>10").contains("after a name"));
    assert!(rejects("properties.x <=10").contains("space after <="));
    assert!(rejects(r#"type = "a" or(type = "b")"#).contains("space after 'or'"));
    assert!(rejects("type = \"a\"\r").contains("\\r"));
    assert!(rejects(r#"properties.a[0] = "x""#).contains("array indexes"));
    assert!(
        rejects(r#"type = "a" and (contains(event, "x") or type = "b")"#)
            .contains("must be the last item")
    );
    assert!(rejects(r#"contains(type, "x")"#).contains("does not take type"));
    assert!(rejects(r#"match(event, "abc")"#).contains("pattern"));
    assert!(rejects(r#"properties.x > "five""#).contains("compares numbers"));
    assert!(
        m(r#"properties.price > "100""#, &ev()),
        "Segment orders by Number(\"100\")"
    );
    assert!(rejects("type = ").contains("expected a value"));
    // A function as the last item of a group parses the same in Segment: accepted.
    assert!(m(
        r#"type = "track" and (type = "x" or contains(event, "Added"))"#,
        &ev()
    ));
}

#[test]
fn js_number_strings() {
    assert_eq!(js_number_string(5.0), "5");
    assert_eq!(js_number_string(-1.5), "-1.5");
    assert_eq!(js_number_string(1e20), "100000000000000000000");
}

proptest::proptest! {
    #[test]
    fn never_panics(s in "[ -~\\t\\n]{0,60}") {
        if let Ok(f) = Fql::parse(&s) {
            let _ = f.matches(&ev());
        }
    }
}

/// Issue 11 item 2: spellings Segment's lexer reads the obvious way are accepted (checked
/// against `@segment/destination-subscriptions` 3.37.0; see tests/oracle/fql.rs).
#[test]
fn spellings_segment_reads_correctly_are_accepted() {
    let e = ev();
    assert!(m(r#"type="track""#, &e));
    assert!(m(r#"type= "track""#, &e));
    assert!(m(r#"event ="Product Added""#, &e));
    assert!(m("properties.price =120", &e));
    assert!(m("properties.flag =true", &e));
    assert!(m("properties.nothing =null", &e));
    assert!(m("properties.price <121", &e) && m("properties.price >100", &e));
    assert!(m("properties.price >-1", &e));
    assert!(m(r#"type!= "x""#, &e));
    assert!(m(r#"contains(event,"Added")"#, &e));
    assert!(m(r#"contains(event, "x")or type = "track""#, &e));
    assert!(m("properties.and= 1", &json!({"properties": {"and": 1}})));
    assert!(m(
        r"properties.\and = 1",
        &json!({"properties": {"and": 1}})
    ));
    assert!(m("contains(properties.sku, 12)", &e));
    assert!(m("userId = 0.0000001", &json!({"userId": "1e-7"})));
    assert!(m("userId = -0", &json!({"userId": "0"})));
}

/// Spellings Segment misreads stay refused, each with the reason.
#[test]
fn spellings_segment_misreads_are_refused() {
    assert!(rejects(r#"type !="x""#).contains("space after !="));
    assert!(rejects("properties.x >=10").contains("space after >="));
    assert!(rejects(r#"type = "a" and(type = "b")"#).contains("space after 'and'"));
    assert!(rejects("properties.0 = 1").contains("reads it as a number"));
    assert!(rejects("properties.-x = 1").contains("reads it as a number"));
    assert!(rejects("properties.and = 1").contains("keyword"));
    assert!(rejects("properties.a.null != null").contains("keyword"));
    assert!(rejects(r"properties.a\.b = 1").contains("splits the path"));
    assert!(rejects("properties.constructor != null").contains("built-in"));
    assert!(rejects("properties.x = 5abc").contains("drops what follows"));
    assert!(rejects(r#"match(event, "*a*")"#).contains("one '*'"));
    assert!(rejects(r#"!(type = "a")"#).contains("'!'"));
    assert!(rejects(r#"type == "a""#).contains("expected a value"));
}

/// Segment's lookup is JavaScript's `cur && cur[key]`: a falsy value on the way is the
/// result, and strings and arrays have a `length`.
#[test]
fn lookups_follow_javascript() {
    let e = json!({"properties": {"zero": 0, "off": false, "s": "Hello", "list": [1, 2]}});
    assert!(m("properties.zero.x = 0", &e));
    assert!(m("properties.off.x = false", &e));
    assert!(m("properties.s.length = 5", &e));
    assert!(m("properties.list.length = 2", &e));
    assert!(m(r#"properties.s.\1 = "e""#, &e));
    assert!(!m(r#"properties.list.\01 = 2"#, &e), "01 is not an index");
}

/// fql-ts refuses a string or a name once it reaches 100000 UTF-16 units.
#[test]
fn length_limits_follow_fql_ts() {
    let long = |n: usize| "x".repeat(n);
    assert!(Fql::parse(&format!("event = \"{}\"", long(99_999))).is_ok());
    assert!(rejects(&format!("event = \"{}\"", long(100_000))).contains("shorter"));
    assert!(rejects(&format!("event = \"{}\"", "😀".repeat(50_000))).contains("shorter"));
    assert!(Fql::parse(&format!("properties.{} = 1", long(99_999))).is_ok());
    assert!(rejects(&format!("properties.{} = 1", long(100_000))).contains("shorter"));
}
