use serde_json::json;

use super::*;

fn rows(ev: Value) -> Vec<Row> {
    rows_for(ev.as_object().unwrap(), "2026-11-22T10:00:00.000Z")
}

fn texts(r: &Row) -> Vec<(&str, ColType, &str)> {
    r.cols
        .iter()
        .map(|(k, c)| (k.as_str(), c.ty, c.text.as_str()))
        .collect()
}

#[test]
fn the_worked_example_of_reference_5_3() {
    let ev = json!({"type":"track","event":"Order Completed","userId":"u1","messageId":"m1",
        "receivedAt":"2026-11-22T09:00:00.000Z","timestamp":"2026-11-22T08:59:59.000Z",
        "properties":{"orderId":"o1","total":10.5,"products":[{"sku":"a"}],"shipping":{"city":"Oslo"},"user_id":"x"},
        "context":{"library":{"name":"analytics.js","version":"2.11.1"},"userAgent":"UA"}});
    let r = rows(ev);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].table, "tracks");
    assert_eq!(
        texts(&r[0]),
        vec![
            ("id", ColType::Text, "m1"),
            (
                "received_at",
                ColType::Timestamp,
                "2026-11-22T09:00:00.000Z"
            ),
            ("timestamp", ColType::Timestamp, "2026-11-22T08:59:59.000Z"),
            (
                "original_timestamp",
                ColType::Timestamp,
                "2026-11-22T08:59:59.000Z"
            ),
            ("uuid_ts", ColType::Timestamp, "2026-11-22T10:00:00.000Z"),
            ("user_id", ColType::Text, "u1"),
            ("event", ColType::Text, "order_completed"),
            ("event_text", ColType::Text, "Order Completed"),
            ("context_library_name", ColType::Text, "analytics.js"),
            ("context_library_version", ColType::Text, "2.11.1"),
            ("context_user_agent", ColType::Text, "UA"),
        ]
    );
    assert_eq!(r[1].table, "order_completed");
    let custom: Vec<_> = texts(&r[1]).into_iter().skip(11).collect();
    assert_eq!(
        custom,
        vec![
            ("order_id", ColType::Text, "o1"),
            ("total", ColType::Float, "10.5"),
            ("products", ColType::Text, r#"[{"sku":"a"}]"#),
            ("shipping_city", ColType::Text, "Oslo"),
        ],
        "user_id collides with the reserved column and is dropped"
    );
    assert_eq!(r[1].cols["user_id"].text, "u1");
}

#[test]
fn identify_makes_identifies_and_users() {
    let ev = json!({"type":"identify","userId":"u7","anonymousId":"a7","messageId":"m2",
        "receivedAt":"2026-11-22T09:00:00.000Z",
        "traits":{"firstName":"Ada","first_name":"Lovelace","age":36,"vip":true,"signedUpAt":"2026-01-02T03:04:05Z","nothing":null},
        "context":{"ip":"203.0.113.1"}});
    let r = rows(ev);
    assert_eq!(
        (r[0].table.as_str(), r[1].table.as_str()),
        ("identifies", "users")
    );
    assert_eq!(
        r[0].cols["first_name"].text, "Lovelace",
        "the later key wins"
    );
    assert_eq!(r[0].cols["age"].ty, ColType::Integer);
    assert_eq!(r[0].cols["vip"].ty, ColType::Boolean);
    assert_eq!(r[0].cols["signed_up_at"].ty, ColType::Timestamp);
    assert!(!r[0].cols.contains_key("nothing"), "nulls make no column");
    let users: Vec<_> = r[1].cols.keys().map(String::as_str).collect();
    assert_eq!(
        users,
        [
            "id",
            "received_at",
            "uuid_ts",
            "first_name",
            "age",
            "vip",
            "signed_up_at"
        ]
    );
    assert_eq!(r[1].cols["id"].text, "u7");
}

#[test]
fn other_types_and_odd_names() {
    let page = rows(
        json!({"type":"page","name":"Home","category":"Docs","anonymousId":"a","messageId":"p1",
        "properties":{"path":"/","Referrer URL":"x","2FA Enabled":false}}),
    );
    assert_eq!(page[0].table, "pages");
    for col in ["name", "category", "path", "referrer_url", "2fa_enabled"] {
        assert!(
            page[0].cols.contains_key(col),
            "{col} in {:?}",
            page[0].cols.keys()
        );
    }
    let group = rows(
        json!({"type":"group","groupId":"g1","userId":"u","messageId":"g","traits":{"plan":"pro"}}),
    );
    assert_eq!(
        (
            group[0].table.as_str(),
            group[0].cols["group_id"].text.as_str()
        ),
        ("groups", "g1")
    );
    let alias = rows(json!({"type":"alias","previousId":"old","userId":"new","messageId":"al"}));
    assert_eq!(alias[0].cols["previous_id"].text, "old");
    let clash = rows(json!({"type":"track","event":"Users","userId":"u","messageId":"t"}));
    assert_eq!(
        clash[1].table, "users_event",
        "an event table never shadows a standard table"
    );
    let big = rows(
        json!({"type":"track","event":"E","userId":"u","messageId":"t","properties":{"n":18446744073709551615u64, "f": 1.5}}),
    );
    assert_eq!(
        (big[1].cols["n"].ty, big[1].cols["f"].ty),
        (ColType::Float, ColType::Float)
    );
    let long = "x".repeat(100);
    let r = rows(
        json!({"type":"track","event":"E","userId":"u","messageId":"t","properties":{ long.clone(): 1 }}),
    );
    assert_eq!(r[1].cols.keys().last().unwrap().len(), MAX_NAME);
}

#[test]
fn nul_is_stripped_from_values_and_json_text() {
    let mut v = json!({"a\u{0}b": "c\u{0}d", "n": 2,
        "list": ["\u{0}", {"k\u{0}": ["x\u{0}"], "k": 1}], "o": {"p\u{0}": "q\u{0}"}});
    strip_nul(&mut v);
    assert_eq!(
        v,
        json!({"a\u{0}b": "cd", "n": 2, "list": ["", {"k": 1}], "o": {"p\u{0}": "q"}}),
        "keys that become columns keep it (snakecase separates there); in arrays the later key wins"
    );
    let r = rows(
        json!({"type":"track","event":"E","messageId":"t","userId":"u",
        "properties":{"x\u{0}y": "a\u{0}"}}),
    );
    assert!(r[1].cols.contains_key("x_y"), "{:?}", r[1].cols.keys());
}

#[test]
fn timestamps_postgres_cannot_hold() {
    for (s, ok) in [
        ("2026-11-22T09:00:00.000Z", true),
        ("2026-11-22T09:00:00+15:59", true),
        ("2026-11-22T09:00:00-15:00", true),
        ("0001-01-01T00:00:00+01:00", true),
        ("0000-01-01T00:00:00Z", false),
        ("2026-11-22T09:00:00+16:00", false),
        ("2026-11-22T09:00:00-23:59", false),
        ("", true),
        ("+x:", true),
    ] {
        assert_eq!(pg_holds_timestamp(s), ok, "{s}");
    }
    let r = rows(
        json!({"type":"track","event":"E","messageId":"t","userId":"u",
        "properties":{"at":"0000-01-01T00:00:00Z"}}),
    );
    assert_eq!(
        r[1].cols["at"].ty,
        ColType::Timestamp,
        "still a timestamp; the loader discards the value"
    );
}
