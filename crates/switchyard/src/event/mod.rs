//! Segment events: the types we accept, and the normalisation every event goes through
//! before it is logged (docs/wire.md#normalisation).

mod merge;
mod normalize;
pub mod readable;
pub mod timestamp;

pub use normalize::{
    Normalized, Rejection, RequestContext, normalize, rejected_display, unreadable,
};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The six Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub fn parse(s: &str) -> Option<EventType> {
        Some(match s {
            "track" => EventType::Track,
            "identify" => EventType::Identify,
            "page" => EventType::Page,
            "screen" => EventType::Screen,
            "group" => EventType::Group,
            "alias" => EventType::Alias,
            _ => return None,
        })
    }

    /// The type named by an ingest path segment: full names and analytics.js's letters.
    pub fn from_path(kind: &str) -> Option<EventType> {
        Some(match kind {
            "t" => EventType::Track,
            "i" => EventType::Identify,
            "p" => EventType::Page,
            "s" => EventType::Screen,
            "g" => EventType::Group,
            "a" => EventType::Alias,
            other => return EventType::parse(other),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }
}
