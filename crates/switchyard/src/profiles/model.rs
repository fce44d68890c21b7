//! A user profile and how events change it (issue 5 "Profiles"): identify and inline
//! `context.traits` set traits with the time each was set; alias and anonymousId+userId link
//! identities; group adds a membership; every event counts and joins the recent list. Every
//! part is bounded, so a profile stays small on disk.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::ProfileEvent;

/// Recent events kept per profile.
pub const RECENT: usize = 20;
/// Identities, groups and traits kept per profile at most.
pub const MAX_IDS: usize = 100;
pub const MAX_GROUPS: usize = 100;
pub const MAX_TRAITS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trait {
    pub value: Value,
    pub set_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub group_id: String,
    #[serde(default)]
    pub traits: Map<String, Value>,
    pub joined_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The user id, or `anonymous:<id>` until one is known.
    pub id: String,
    pub traits: BTreeMap<String, Trait>,
    pub user_ids: Vec<String>,
    pub anonymous_ids: Vec<String>,
    /// The `previousId`s of alias events, which are also in `user_ids`. A previousId is
    /// whatever id the person had before (analytics.js aliases from the anonymousId), so
    /// later events carrying it as their anonymousId find this profile too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub groups: Vec<Group>,
    pub first_seen: String,
    pub last_seen: String,
    pub event_counts: BTreeMap<String, u64>,
    /// Newest first.
    pub recent_events: VecDeque<Recent>,
}

/// One of a profile's most recent events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recent {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub source: String,
}

fn push_unique(list: &mut Vec<String>, v: &str, cap: usize) {
    if !list.iter().any(|x| x == v) && list.len() < cap {
        list.push(v.to_owned());
    }
}

impl Profile {
    pub fn new(id: &str) -> Profile {
        Profile {
            id: id.to_owned(),
            ..Profile::default()
        }
    }

    /// Applies one normalised event (already resolved to this profile).
    pub fn apply(&mut self, ev: &ProfileEvent, source: &str) {
        let ts = ev.timestamp.get().unwrap_or_default();
        if let Some(u) = ev.user_id.get() {
            push_unique(&mut self.user_ids, u, MAX_IDS);
        }
        if let Some(a) = ev.anonymous_id.get() {
            push_unique(&mut self.anonymous_ids, a, MAX_IDS);
        }
        let ty = ev.ty.get().unwrap_or("unknown");
        if ty == "identify" {
            self.set_traits(ev.traits(), ts);
        }
        self.set_traits(ev.context_traits(), ts);
        if ty == "group"
            && let Some(g) = ev.group_id.get()
        {
            self.join(g, ev.traits(), ts);
        }
        if ty == "alias"
            && let Some(p) = ev.previous_id.get()
        {
            push_unique(&mut self.user_ids, p, MAX_IDS);
            push_unique(&mut self.aliases, p, MAX_IDS);
        }
        match self.event_counts.get_mut(ty) {
            Some(n) => *n += 1,
            None => {
                self.event_counts.insert(ty.to_owned(), 1);
            }
        }
        self.seen(ts, ts);
        self.remember(Recent {
            ty: ty.to_owned(),
            event: ev.event.get().map(str::to_owned),
            name: ev.name.get().map(str::to_owned),
            message_id: ev.message_id.get().map(str::to_owned),
            timestamp: ts.to_owned(),
            source: source.to_owned(),
        });
    }

    fn set_traits(&mut self, traits: Option<Map<String, Value>>, ts: &str) {
        for (k, value) in traits.into_iter().flatten() {
            let newer = self
                .traits
                .get(&k)
                .is_none_or(|old| old.set_at.as_str() <= ts);
            if newer && (self.traits.contains_key(&k) || self.traits.len() < MAX_TRAITS) {
                let set_at = ts.to_owned();
                self.traits.insert(k, Trait { value, set_at });
            }
        }
    }

    fn join(&mut self, group_id: &str, traits: Option<Map<String, Value>>, ts: &str) {
        let traits = traits.unwrap_or_default();
        if let Some(g) = self.groups.iter_mut().find(|g| g.group_id == group_id) {
            g.traits.extend(traits);
        } else if self.groups.len() < MAX_GROUPS {
            self.groups.push(Group {
                group_id: group_id.to_owned(),
                traits,
                joined_at: ts.to_owned(),
            });
        }
    }

    fn seen(&mut self, first: &str, last: &str) {
        if !first.is_empty() && (self.first_seen.is_empty() || first < self.first_seen.as_str()) {
            self.first_seen = first.to_owned();
        }
        if last > self.last_seen.as_str() {
            self.last_seen = last.to_owned();
        }
    }

    fn remember(&mut self, summary: Recent) {
        let at = self
            .recent_events
            .iter()
            .position(|e| e.timestamp <= summary.timestamp)
            .unwrap_or(self.recent_events.len());
        self.recent_events.insert(at, summary);
        self.recent_events.truncate(RECENT);
    }

    /// Folds `other` (the same person under another key) into this profile.
    pub fn absorb(&mut self, other: Profile) {
        for (k, t) in other.traits {
            let newer = self.traits.get(&k).is_none_or(|old| old.set_at <= t.set_at);
            if newer && (self.traits.contains_key(&k) || self.traits.len() < MAX_TRAITS) {
                self.traits.insert(k, t);
            }
        }
        other
            .user_ids
            .iter()
            .for_each(|u| push_unique(&mut self.user_ids, u, MAX_IDS));
        other
            .anonymous_ids
            .iter()
            .for_each(|a| push_unique(&mut self.anonymous_ids, a, MAX_IDS));
        other
            .aliases
            .iter()
            .for_each(|a| push_unique(&mut self.aliases, a, MAX_IDS));
        for g in other.groups {
            self.join(&g.group_id, Some(g.traits), &g.joined_at);
        }
        for (k, n) in other.event_counts {
            *self.event_counts.entry(k).or_default() += n;
        }
        self.seen(&other.first_seen, &other.last_seen);
        for e in other.recent_events {
            self.remember(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Applies an event written as JSON, as the store reads it from the log.
    fn apply(p: &mut Profile, v: Value) {
        let text = v.to_string();
        p.apply(&ProfileEvent::parse(text.as_bytes()).unwrap(), "web");
    }

    #[test]
    fn traits_identities_groups_counts_and_recent() {
        let mut p = Profile::new("u1");
        apply(
            &mut p,
            json!({"type":"identify","userId":"u1","anonymousId":"a1","messageId":"m1","timestamp":"2026-01-01T00:00:00.000Z","traits":{"plan":"free","email":"a@b.co"}}),
        );
        apply(
            &mut p,
            json!({"type":"track","userId":"u1","event":"Upgraded","messageId":"m2","timestamp":"2026-01-02T00:00:00.000Z","context":{"traits":{"plan":"pro"}}}),
        );
        apply(
            &mut p,
            json!({"type":"identify","userId":"u1","messageId":"m0","timestamp":"2025-12-31T00:00:00.000Z","traits":{"plan":"trial"}}),
        );
        apply(
            &mut p,
            json!({"type":"group","userId":"u1","groupId":"g1","messageId":"m3","timestamp":"2026-01-03T00:00:00.000Z","traits":{"name":"Acme"}}),
        );
        assert_eq!(
            p.traits["plan"].value, "pro",
            "inline traits count, and a late old identify does not win"
        );
        assert_eq!(p.traits["plan"].set_at, "2026-01-02T00:00:00.000Z");
        assert_eq!(p.anonymous_ids, ["a1"]);
        assert_eq!(p.groups[0].group_id, "g1");
        assert_eq!(p.event_counts["identify"], 2);
        assert_eq!(
            (p.first_seen.as_str(), p.last_seen.as_str()),
            ("2025-12-31T00:00:00.000Z", "2026-01-03T00:00:00.000Z")
        );
        let order: Vec<_> = p
            .recent_events
            .iter()
            .map(|e| e.message_id.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["m3", "m2", "m1", "m0"]);
        for i in 0..30 {
            apply(
                &mut p,
                json!({"type":"track","userId":"u1","event":"E","messageId":format!("x{i}"),"timestamp":"2026-02-01T00:00:00.000Z"}),
            );
        }
        assert_eq!(p.recent_events.len(), RECENT);
    }

    #[test]
    fn absorbing_an_anonymous_profile() {
        let mut anon = Profile::new("anonymous:a9");
        apply(
            &mut anon,
            json!({"type":"page","anonymousId":"a9","name":"Home","messageId":"p1","timestamp":"2026-01-01T00:00:00.000Z"}),
        );
        let mut user = Profile::new("u9");
        apply(
            &mut user,
            json!({"type":"identify","userId":"u9","messageId":"i1","timestamp":"2026-01-05T00:00:00.000Z","traits":{"email":"u9@x.io"}}),
        );
        user.absorb(anon);
        assert_eq!(user.anonymous_ids, ["a9"]);
        assert_eq!(
            (user.event_counts["page"], user.event_counts["identify"]),
            (1, 1)
        );
        assert_eq!(user.first_seen, "2026-01-01T00:00:00.000Z");
        assert_eq!(user.recent_events.len(), 2);
        assert_eq!(user.recent_events[1].name.as_deref(), Some("Home"));
        assert_eq!(
            serde_json::to_value(&user.recent_events[1]).unwrap(),
            json!({"type":"page","name":"Home","messageId":"p1","timestamp":"2026-01-01T00:00:00.000Z","source":"web"}),
            "the API's shape of a recent event"
        );
    }
}
