//! What ingest accepts, every reader of the log can read (docs/wire.md#what-ingest-refuses).
//!
//! Ingest copies nested values as raw bytes, and serde_json's raw-value scanner is lenient
//! where its full parser is not: it lets through numbers out of `f64` range (`1e400`), lone
//! surrogate escapes (`"\ud800"`) and nesting of any depth. Every destination, the warehouse
//! and the debugger parse the whole event, so such an element would be accepted with 200 and
//! then fail at every reader. [`check`] walks the element once with the full parser, building
//! nothing, and refuses it here with a reason instead.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The deepest nesting an element may have, counting the element itself as level 1. Readers
/// parse with serde_json's limit of 128; the margin leaves room for the envelopes a
/// destination wraps events in (a forwarded batch adds two levels) and for the envelope
/// `context` merged one level down.
pub const MAX_DEPTH: usize = 100;

/// Checks that `json` is one JSON value every reader can parse, at most `max_depth` levels
/// deep. The error names the place: `properties.a[3]: number out of range`.
pub fn check(json: &str, max_depth: usize) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let fast = Check {
        depth_left: max_depth,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match fast {
        Ok(()) => Ok(()),
        // Off the accepted path: walk again, tracking where it failed.
        Err(_) => Err(describe(json, max_depth)),
    }
}

fn describe(json: &str, max_depth: usize) -> String {
    let mut de = serde_json::Deserializer::from_str(json);
    let mut track = serde_path_to_error::Track::new();
    let result = Check {
        depth_left: max_depth,
    }
    .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    let err = match result.and_then(|()| de.end()) {
        Ok(()) => return "the value could not be read".to_owned(),
        Err(e) => e,
    };
    let path = track.path().to_string();
    // serde_json appends "at line L column C"; the path says more to a person.
    let text = err.to_string();
    let mut text = text.split(" at line ").next().unwrap_or(&text);
    if text.contains("hex escape") || text.contains("surrogate") {
        text = "invalid \\u escape: a lone surrogate (\\ud800-\\udfff) is not a character";
    }
    if path == "." {
        text.to_owned()
    } else {
        format!("{path}: {text}")
    }
}

#[derive(Clone, Copy)]
struct Check {
    depth_left: usize,
}

impl Check {
    fn nested<E: serde::de::Error>(self) -> Result<Check, E> {
        match self.depth_left.checked_sub(1) {
            Some(left) if left > 0 => Ok(Check { depth_left: left }),
            _ => Err(E::custom(format_args!(
                "nested deeper than {MAX_DEPTH} levels"
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        // Keys go through the same full string parse, so a lone surrogate in a name is seen.
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels - 1), "]".repeat(levels - 1))
    }

    #[test]
    fn ordinary_events_pass() {
        for ok in [
            r#"{"type":"track","event":"A","properties":{"n":1e300,"m":-0,"s":"\ud83d\ude00"}}"#,
            r#"{"big":123456789012345678901234567890,"tiny":1e-400,"e":"","u":"\u00e9"}"#,
            "[]",
            "null",
        ] {
            assert_eq!(check(ok, MAX_DEPTH), Ok(()), "{ok}");
        }
        assert_eq!(check(&nested(MAX_DEPTH), MAX_DEPTH), Ok(()));
    }

    #[test]
    fn what_readers_cannot_parse_is_refused_with_its_place() {
        let cases = [
            (
                r#"{"properties":{"x":1e400}}"#,
                "properties.x: number out of range",
            ),
            (
                r#"{"properties":{"a":[1,-1e999]}}"#,
                "properties.a[1]: number out of range",
            ),
            (
                r#"{"properties":{"s":"\ud800"}}"#,
                "properties.s: invalid \\u escape: a lone surrogate (\\ud800-\\udfff) is not a character",
            ),
            (
                r#"{"properties":{"\udc00":1}}"#,
                "properties.?: invalid \\u escape: a lone surrogate (\\ud800-\\udfff) is not a character",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(check(json, MAX_DEPTH), Err(want.to_owned()), "{json}");
        }
        let deep = check(&nested(MAX_DEPTH + 1), MAX_DEPTH).expect_err("too deep");
        assert!(deep.contains("nested deeper than 100 levels"), "{deep}");
        // Deeper than serde_json's own limit is refused the same way, never a stack overflow.
        let very = check(&nested(100_000), MAX_DEPTH).expect_err("too deep");
        assert!(very.contains("nested deeper"), "{very}");
    }

    proptest! {
        /// Whatever passes can be parsed by a reader, whole, into a `Value`.
        #[test]
        fn what_passes_every_reader_can_parse(s in r#"[\[\]{}",:0-9eE.+\-a-z\\u ]{0,64}"#) {
            if check(&s, MAX_DEPTH).is_ok() {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok(), "{}", s);
            }
        }

        #[test]
        fn arbitrary_json_values_pass(v in arb_json()) {
            let text = serde_json::to_string(&v).expect("serialises");
            prop_assert_eq!(check(&text, MAX_DEPTH), Ok(()));
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
