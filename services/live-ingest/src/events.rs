//! GET /api/v1/live/{id}/events: a live stream's state changes as
//! server-sent events, for its owner (and admins).
//!
//! - `state` whenever the state, the publisher's presence, the broadcast or
//!   the replay changes, with the whole stream as the API shows it;
//! - `deleted` when the stream is deleted, and the stream of events ends.
//!
//! One watcher per stream polls (the catalogue and what is on air, once a
//! second) and fans changes out through [`shared::watch`], which caps the
//! subscribers (503 beyond `SSE_MAX_SUBSCRIBERS`). A live stream has no
//! final state (it may go live again), so a subscriber's events end by
//! themselves after an hour; EventSource clients reconnect.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::StreamExt;
use shared::auth::Caller;
use shared::watch::Hub;
use uuid::Uuid;

use crate::catalogue::LiveState;
use crate::on_air::OnAir;

const POLL: Duration = Duration::from_secs(1);
const MAX_AGE: Duration = Duration::from_secs(3600);

/// A stream as one poll saw it. Equal when nothing a subscriber is told
/// about changed (the ingest's measured bitrate moves every poll and is not
/// a state change).
#[derive(Debug, Clone)]
pub enum Snapshot {
    Gone,
    Stream { state: LiveState, publishing: bool, broadcast: Option<Uuid>, replay: Option<Uuid>, view: Arc<str> },
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Gone, Self::Gone) => true,
            (Self::Stream { state: a, publishing: b, broadcast: c, replay: d, .. }, Self::Stream { state: w, publishing: x, broadcast: y, replay: z, .. }) => (a, b, c, d) == (w, x, y, z),
            _ => false,
        }
    }
}

/// The watchers of live-ingest: one per watched stream.
pub type LiveWatch = Hub<Uuid, Snapshot>;

pub async fn live_events(State(on_air): State<OnAir>, caller: Caller, Path(id): Path<String>) -> Response {
    let stream = match crate::api::visible(&on_air, &caller, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let source = on_air.clone();
    let sub = match on_air.watch.subscribe(stream.id, move || poll(source, stream.id)) {
        Ok(sub) => sub,
        Err(full) => return full.into_response(),
    };
    let events = sub
        .into_stream()
        .map(|s| {
            Ok::<_, Infallible>(match s {
                Snapshot::Gone => Event::default().event("deleted").data(""),
                Snapshot::Stream { view, .. } => Event::default().event("state").data(&*view),
            })
        })
        .take_until(tokio::time::sleep(MAX_AGE));
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

fn poll(on_air: OnAir, id: Uuid) -> BoxStream<'static, Snapshot> {
    futures::stream::unfold((on_air, true, false), move |(on_air, first, done)| async move {
        if done {
            return None;
        }
        if !first {
            tokio::time::sleep(POLL).await;
        }
        loop {
            match on_air.streams.get(id).await {
                Ok(None) => return Some((Snapshot::Gone, (on_air, false, true))),
                Ok(Some(s)) => {
                    let b = on_air.by_stream(s.id);
                    let view = crate::api::view(&on_air, &s).to_string();
                    let snap = Snapshot::Stream {
                        state: s.state,
                        publishing: b.as_ref().is_some_and(|b| b.is_publishing()),
                        broadcast: b.map(|b| b.id),
                        replay: s.replay_video_id,
                        view: view.into(),
                    };
                    return Some((snap, (on_air, false, false)));
                }
                Err(e) => {
                    tracing::warn!(stream = %id, error = format!("{e:#}"), "live events poll failed");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    })
    .boxed()
}
