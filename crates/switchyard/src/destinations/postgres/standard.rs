//! The columns every table of a kind has from its first day
//! (docs/destinations.md#standard-columns), whether or not the events so far carried the field, so
//! that models written against Segment's schema (the dbt-segment package's page views, for one) run
//! before the first event that has them. They are created with the table, with these types, and
//! added to a table that lacks them.

use super::lattice::{Need, Needs};
use super::rows::ColType::{self, Text, Timestamp};

/// What a table holds, which decides its standard columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// `tracks` and every per-event table.
    Track,
    Identify,
    User,
    Page,
    Screen,
    Group,
    Alias,
    /// A `Segment.set` collection: only the columns its rows bring.
    Object,
}

/// Every event table (`id` is the primary key the table is created with).
const EVENT: [(&str, ColType); 11] = [
    ("received_at", Timestamp),
    ("sent_at", Timestamp),
    ("original_timestamp", Timestamp),
    ("timestamp", Timestamp),
    ("uuid_ts", Timestamp),
    ("anonymous_id", Text),
    ("user_id", Text),
    ("context_ip", Text),
    ("context_library_name", Text),
    ("context_library_version", Text),
    ("context_user_agent", Text),
];

const TRACK: [(&str, ColType); 2] = [("event", Text), ("event_text", Text)];
const USER: [(&str, ColType); 2] = [("received_at", Timestamp), ("uuid_ts", Timestamp)];
const SCREEN: [(&str, ColType); 2] = [("name", Text), ("category", Text)];
const GROUP: [(&str, ColType); 1] = [("group_id", Text)];
const ALIAS: [(&str, ColType); 1] = [("previous_id", Text)];

/// `pages`: analytics.js's page properties and the page and campaign context.
const PAGE: [(&str, ColType); 17] = [
    ("name", Text),
    ("category", Text),
    ("path", Text),
    ("referrer", Text),
    ("search", Text),
    ("title", Text),
    ("url", Text),
    ("context_page_path", Text),
    ("context_page_referrer", Text),
    ("context_page_search", Text),
    ("context_page_title", Text),
    ("context_page_url", Text),
    ("context_campaign_source", Text),
    ("context_campaign_medium", Text),
    ("context_campaign_name", Text),
    ("context_campaign_term", Text),
    ("context_campaign_content", Text),
];

/// The standard columns of a table of `kind`, besides `id`.
pub fn columns(kind: TableKind) -> Vec<(&'static str, ColType)> {
    let extra: &[(&str, ColType)] = match kind {
        TableKind::User => return USER.to_vec(),
        TableKind::Object => return Vec::new(),
        TableKind::Track => &TRACK,
        TableKind::Page => &PAGE,
        TableKind::Screen => &SCREEN,
        TableKind::Group => &GROUP,
        TableKind::Alias => &ALIAS,
        TableKind::Identify => &[],
    };
    EVENT.iter().chain(extra).copied().collect()
}

/// `needs` with the standard columns of `kind` first, at their standard types.
pub fn with_standard(kind: TableKind, needs: Needs) -> Needs {
    let mut out = Needs::with_capacity(needs.len() + 30);
    if let Some(id) = needs.get("id") {
        out.insert("id".to_owned(), *id);
    }
    for (col, ty) in columns(kind) {
        let decimal = needs.get(col).is_some_and(|n| n.decimal);
        out.insert(col.to_owned(), Need { first: ty, decimal });
    }
    for (col, need) in needs {
        out.entry(col).or_insert(need);
    }
    out
}
