//! What the profile store reads of an event: the ids, the type, the names, and the traits.
//! Parsed straight from the log record's bytes, borrowing its strings; `properties` and the
//! rest of `context` are skipped without being built, and traits are kept as raw JSON until a
//! profile needs them. Measured: building a whole `Map` per event cost the server a fifth of
//! its CPU under `/v1/track` load (BENCHMARKS.md, "Profiles").
//!
//! Every field is lenient: a value of an unexpected type reads as absent instead of failing
//! the event, so one odd field never costs a profile its update.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The visitor methods for the JSON values a lenient field does not want: each reads as the
/// field's default (absent), an array's elements skipped unbuilt.
macro_rules! absent_otherwise {
    ($t:ty) => {
        fn visit_bool<E>(self, _: bool) -> Result<$t, E> {
            Ok(<$t>::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<$t, E> {
            Ok(<$t>::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<$t, E> {
            Ok(<$t>::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<$t, E> {
            Ok(<$t>::default())
        }
        fn visit_unit<E>(self) -> Result<$t, E> {
            Ok(<$t>::default())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<$t, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok(<$t>::default())
        }
    };
}

/// A string field, or nothing when the value is absent, empty or not a string.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Text<'a>(Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Text<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            absent_otherwise!(Text<'de>);
        }
        let v: Text<'de> = d.deserialize_any(V)?;
        Ok(v)
    }
}

/// `context`, of which only `traits` is kept (the inline identification of seed 001).
#[derive(Debug, Default)]
pub struct Context<'a> {
    traits: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Context<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Context<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Context<'de>, A::Error> {
                let mut ctx = Context::default();
                while let Some(key) = m.next_key::<Cow<'de, str>>()? {
                    if key == "traits" {
                        ctx.traits = Some(m.next_value()?);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ctx)
            }
            fn visit_str<E>(self, _: &str) -> Result<Context<'de>, E> {
                Ok(Context::default())
            }
            absent_otherwise!(Context<'de>);
        }
        let v: Context<'de> = d.deserialize_any(V)?;
        Ok(v)
    }
}

/// The parts of a normalised event that change a profile.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProfileEvent<'a> {
    #[serde(borrow, rename = "type")]
    pub ty: Text<'a>,
    #[serde(borrow)]
    pub user_id: Text<'a>,
    #[serde(borrow)]
    pub anonymous_id: Text<'a>,
    #[serde(borrow)]
    pub previous_id: Text<'a>,
    #[serde(borrow)]
    pub group_id: Text<'a>,
    #[serde(borrow)]
    pub message_id: Text<'a>,
    #[serde(borrow)]
    pub timestamp: Text<'a>,
    #[serde(borrow)]
    pub event: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Context<'a>,
}

/// An object's members, or nothing when the raw JSON is not an object. A member whose value
/// cannot be read (a number out of range, in a log written before ingest refused such JSON)
/// is left out and reported in a warning; the other members are kept.
fn object(raw: Option<&RawValue>) -> Option<Map<String, Value>> {
    let members: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(raw?.get()).ok()?;
    let mut out = Map::new();
    for (key, value) in members {
        match serde_json::from_str(value.get()) {
            Ok(v) => {
                out.insert(key, v);
            }
            Err(error) => tracing::warn!(%key, %error,
                "profiles: a trait value could not be read and is not kept; the event's other traits are"),
        }
    }
    Some(out)
}

impl<'a> ProfileEvent<'a> {
    /// Reads an event; `None` when the bytes are not JSON.
    pub fn parse(bytes: &'a [u8]) -> Option<ProfileEvent<'a>> {
        serde_json::from_slice(bytes).ok()
    }

    /// The top-level `traits` (identify, group), when an object.
    pub fn traits(&self) -> Option<Map<String, Value>> {
        object(self.traits)
    }

    /// `context.traits`, when an object.
    pub fn context_traits(&self) -> Option<Map<String, Value>> {
        object(self.context.traits)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Issue 11 item 13: one value the store cannot keep costs only that trait.
    #[test]
    fn an_unreadable_trait_value_costs_only_that_trait() {
        let body =
            br#"{"type":"identify","userId":"u","traits":{"plan":"pro","n":1e400,"deep":{"a":[1]}},
            "context":{"traits":{"email":"a@b.c","bad":-1e999}}}"#;
        let ev = ProfileEvent::parse(body).expect("the event reads");
        let traits = ev.traits().expect("an object");
        assert_eq!(
            Value::Object(traits),
            serde_json::json!({"plan": "pro", "deep": {"a": [1]}})
        );
        let inline = ev.context_traits().expect("an object");
        assert_eq!(Value::Object(inline), serde_json::json!({"email": "a@b.c"}));
    }

    #[test]
    fn reads_ids_and_traits_and_skips_the_rest() {
        let body = br#"{"type":"track","event":"Order \"Done\"","userId":"u1","anonymousId":"",
            "properties":{"total":27.5,"items":[{"sku":"a"}]},
            "context":{"ip":"1.2.3.4","traits":{"plan":"pro"},"library":{"name":"x"}},"timestamp":"2026-01-01T00:00:00.000Z"}"#;
        let ev = ProfileEvent::parse(body).unwrap();
        assert_eq!(ev.ty.get(), Some("track"));
        assert_eq!(
            ev.event.get(),
            Some("Order \"Done\""),
            "escaped strings are read"
        );
        assert_eq!(ev.user_id.get(), Some("u1"));
        assert_eq!(ev.anonymous_id.get(), None, "an empty id is no id");
        assert_eq!(ev.context_traits().unwrap()["plan"], "pro");
        assert!(ev.traits().is_none());
    }

    #[test]
    fn odd_types_read_as_absent_instead_of_failing() {
        let body =
            br#"{"type":"identify","userId":42,"name":{"a":[1]},"event":[1,2],"messageId":null,
            "traits":[1],"context":"web","anonymousId":"a1"}"#;
        let ev = ProfileEvent::parse(body).unwrap();
        assert_eq!(
            (ev.user_id.get(), ev.name.get(), ev.event.get()),
            (None, None, None)
        );
        assert_eq!(ev.message_id.get(), None);
        assert!(ev.traits().is_none() && ev.context_traits().is_none());
        assert_eq!(ev.anonymous_id.get(), Some("a1"));
        let array = ProfileEvent::parse(b"[1,2]");
        assert!(array.is_none_or(|e| e.ty.get().is_none() && e.user_id.get().is_none()));
        assert!(ProfileEvent::parse(b"{\"type\":").is_none());
    }

    /// Any JSON value, a few levels deep.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the event's fields hold, the reader agrees with a full parse: a field is
        /// there exactly when it is a non-empty string, and traits exactly when an object.
        #[test]
        fn agrees_with_a_full_parse(user in json(), ty in json(), traits in json(), ctx in json(), props in json()) {
            let text = serde_json::json!({"type": ty, "userId": user, "traits": traits, "context": ctx, "properties": props}).to_string();
            let ev: Value = serde_json::from_str(&text).unwrap();
            let got = ProfileEvent::parse(text.as_bytes()).expect("an object always reads");
            let want = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
            prop_assert_eq!(got.user_id.get().map(str::to_owned), want(&ev["userId"]));
            prop_assert_eq!(got.ty.get().map(str::to_owned), want(&ev["type"]));
            prop_assert_eq!(got.traits(), ev["traits"].as_object().cloned());
            prop_assert_eq!(got.context_traits(), ev["context"]["traits"].as_object().cloned());
        }

        /// Any bytes at all: no panic.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ProfileEvent::parse(&bytes).map(|e| (e.traits(), e.context_traits()));
        }
    }
}
