//! `GET /api/v1/stream[?source=ID]`: the debugger's live feed, as Server-Sent Events. Each
//! event recorded from now on (accepted, rejected, duplicate, unverified) is sent as
//! `event: <status>` with `data:` one entry of the `/sources/{id}/events` list. A client that
//! falls more than `recent::LIVE_BUFFER` events behind gets `event: lagged` with
//! `data: {"skipped": N}` and carries on from the newest. The stream ends when the server
//! drains.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;

use super::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::ApiError;
use crate::recent::RecentEvent;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    source: Option<String>,
}

pub async fn stream(
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if let Some(id) = &q.source
        && !state.recent.has_source(id)
    {
        return Err(ApiError::not_found(format!("no source {id:?}")));
    }
    let (rx, closed) = state.recent.subscribe();
    let events = stream::unfold((rx, q.source), |(mut rx, source)| async move {
        loop {
            let event = match rx.recv().await {
                Ok(ev) if source.as_deref().is_some_and(|s| s != &*ev.source) => continue,
                Ok(ev) => entry(&ev),
                Err(RecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(format!("{{\"skipped\":{n}}}")),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, source)));
        }
    });
    let events = events.take_until(closed.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn entry(ev: &Arc<RecentEvent>) -> Event {
    let event = Event::default().event(ev.status.as_str());
    // Serializing the view cannot fail (strings and raw JSON); say so if it ever does.
    event
        .json_data(ev.view())
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}
