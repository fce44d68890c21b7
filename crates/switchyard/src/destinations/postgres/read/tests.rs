use serde_json::json;

use super::*;
use crate::log::record::Entry;

fn dest() -> DestinationConfig {
    let yaml = "server: { data_dir: /tmp/unused }\n\
        sources:\n  - { id: web, type: http_api, write_keys: { production: wk_1 } }\n\
        destinations:\n  - { id: wh, type: postgres, settings: { url: \"postgres://x@127.0.0.1/db\" } }\n";
    let (config, problems) = crate::config::compile_str(yaml, "test", &|_| None);
    let config = config.unwrap_or_else(|| panic!("config: {problems:?}"));
    config.destinations[0].clone()
}

fn record(seq: u64, kind: Kind, message_id: &str, body: &[u8]) -> Record {
    Record {
        seq,
        entry: Entry {
            kind,
            received_ms: 1_700_000_000_000,
            source: "web".into(),
            environment: "production".into(),
            message_id: message_id.into(),
            reason: String::new(),
            body: body.to_vec(),
        },
    }
}

fn discard_of(o: Outcome) -> Discard {
    match o {
        Outcome::Discard(d) => d,
        other => panic!("not a discard: {other:?}"),
    }
}

#[test]
fn records_that_cannot_be_read_are_discards_with_the_reason() {
    let dest = dest();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: [(&[u8], &str); 5] = [
        (
            br#"{"type":"track","properties":{"n":1e400}}"#,
            "number out of range",
        ),
        (
            br#"{"type":"track","properties":{"s":"\ud800"}}"#,
            "hex escape",
        ),
        (deep.as_bytes(), "recursion limit"),
        (
            b"{\"type\":\"track\",\"event\":\"E\xff\"}",
            "could not be read",
        ),
        (b"{\"type\":", "EOF"),
    ];
    for (i, (body, want)) in cases.into_iter().enumerate() {
        let d = discard_of(outcome(
            &record(i as u64, Kind::Accepted, "m", body),
            &dest,
            "now",
        ));
        assert!(
            d.reason.starts_with("the event could not be read: "),
            "{d:?}"
        );
        assert!(d.reason.contains(want), "{want}: {d:?}");
        assert_eq!((d.row_id.as_str(), d.code.as_str()), ("m", "unreadable"));
        assert!(d.value.len() <= 4200, "the raw bytes, cut");
    }
    let d = discard_of(outcome(&record(9, Kind::Object, "", b"[1]"), &dest, "now"));
    assert_eq!(
        (d.row_id.as_str(), d.reason.as_str()),
        ("seq:9", "the object is not a JSON object")
    );
    let d = discard_of(outcome(
        &record(3, Kind::Object, "", br#"{"collection":"rooms"}"#),
        &dest,
        "now",
    ));
    assert_eq!(d.code, "no_rows");
    let d = discard_of(outcome(
        &record(
            4,
            Kind::Accepted,
            "m-4",
            br#"{"type":"nonsense","messageId":"m-4"}"#,
        ),
        &dest,
        "now",
    ));
    assert_eq!(
        d.reason,
        "an event of type \"nonsense\" makes no warehouse rows"
    );
    let skipped = outcome(&record(5, Kind::Duplicate, "m", b"{oops"), &dest, "now");
    assert!(
        matches!(skipped, Outcome::NotWanted),
        "duplicates are not this reader's"
    );
}

#[test]
fn nul_is_removed_from_events_and_objects() {
    let dest = dest();
    let ev = json!({"type": "identify", "userId": "u\u{0}1", "messageId": "m\u{0}1",
        "traits": {"na\u{0}me": "Ada\u{0}", "tags": ["a\u{0}", {"k\u{0}": "\u{0}"}]},
        "context": {"userAgent": "UA\u{0}"}});
    let body = serde_json::to_vec(&ev).unwrap();
    let Outcome::Event(rows) = outcome(&record(0, Kind::Accepted, "m", &body), &dest, "now") else {
        panic!("an event");
    };
    let identifies = &rows[0].cols;
    assert_eq!(identifies["id"].text, "m1");
    assert_eq!(identifies["user_id"].text, "u1");
    assert_eq!(
        identifies["na_me"].text, "Ada",
        "names: NUL separates words"
    );
    assert_eq!(identifies["tags"].text, r#"["a",{"k":""}]"#);
    assert_eq!(identifies["context_user_agent"].text, "UA");
    assert_eq!(
        rows[1].cols["id"].text, "u1",
        "users is keyed by the clean id"
    );
    let obj = json!({"collection": "Ro\u{0}oms", "id": "r\u{0}1", "properties": {"vi\u{0}ew": "s\u{0}ea"}});
    let body = serde_json::to_vec(&obj).unwrap();
    let Outcome::Object(row) = outcome(&record(1, Kind::Object, "", &body), &dest, "now") else {
        panic!("an object row");
    };
    assert_eq!(
        (
            row.table.as_str(),
            row.cols["id"].text.as_str(),
            row.cols["vi_ew"].text.as_str()
        ),
        ("rooms", "r1", "sea")
    );
}
