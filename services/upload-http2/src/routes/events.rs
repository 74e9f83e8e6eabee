//! GET /api/v1/videos/{video_id}/events: a video's processing as
//! server-sent events.
//!
//! - `status` whenever the status changes, with the whole video;
//! - `progress` while processing: `{stage, percent, fps, speed}`;
//! - the stream ends after `status` reaches `ready` or `failed`, or `deleted`.
//!
//! However many clients watch a video, one watcher polls for it
//! (PostgreSQL for the status, Redis for progress, twice a second) and
//! fans its snapshots out through [`shared::watch`], which also caps the
//! subscribers (503 beyond `SSE_MAX_SUBSCRIBERS`). A subscriber's stream ends
//! by itself after an hour; EventSource clients reconnect.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use shared::cache::Progress;
use shared::auth::Caller;
use shared::error::Problem;
use shared::extract::VideoId;
use shared::watch::Hub;
use uuid::Uuid;

use super::view::VideoView;
use super::AppState;
use crate::error::ApiError;

// The catalogue's status values this stream acts on.
const READY: &str = "ready";
const FAILED: &str = "failed";
const PROCESSING: &str = "processing";

const POLL: Duration = Duration::from_millis(500);
const MAX_AGE: Duration = Duration::from_secs(3600);
/// The watcher's first poll answers within this, or the catalogue is down.
const FIRST_WITHIN: Duration = Duration::from_secs(5);

/// One video's state as a poll saw it: what every subscriber diffs against.
#[derive(Debug, Clone, PartialEq)]
pub enum Snapshot {
    /// No such row: never was, or deleted.
    Gone,
    Video {
        status: String,
        /// The video as the API shows it, serialised once for every subscriber.
        view: Arc<str>,
        progress: Option<Progress>,
    },
}

impl Snapshot {
    fn is_terminal(&self) -> bool {
        match self {
            Snapshot::Gone => true,
            Snapshot::Video { status, .. } => is_final(status),
        }
    }
}

fn is_final(status: &str) -> bool {
    status == READY || status == FAILED
}

/// The watchers of upload-http2: one per watched video.
pub type VideoWatch = Hub<Uuid, Snapshot>;

pub async fn video_events(State(st): State<AppState>, caller: Caller, VideoId(id): VideoId) -> Result<Response, ApiError> {
    super::visible_video(&st, &caller, id).await?;
    let source = st.clone();
    let sub = match st.events.subscribe(id, move || poll(source, id)) {
        Ok(sub) => sub,
        Err(full) => return Ok(full.into_response()),
    };
    let mut snapshots = sub.into_stream().boxed();
    match tokio::time::timeout(FIRST_WITHIN, snapshots.next()).await {
        Err(_) => Ok(Problem::unavailable("the catalogue (PostgreSQL)", &anyhow::anyhow!("no answer within {FIRST_WITHIN:?}")).into_response()),
        Ok(None | Some(Snapshot::Gone)) => Err(ApiError::VideoNotFound(id)),
        Ok(Some(first)) => Ok(Sse::new(events(id, first, snapshots)).keep_alive(KeepAlive::default()).into_response()),
    }
}

/// The watcher's source: one snapshot per poll, ending after a terminal one.
fn poll(st: AppState, id: Uuid) -> BoxStream<'static, Snapshot> {
    futures::stream::unfold((st, true, false), move |(st, first, done)| async move {
        if done {
            return None;
        }
        if !first {
            tokio::time::sleep(POLL).await;
        }
        loop {
            match snapshot(&st, id).await {
                Ok(s) => {
                    let done = s.is_terminal();
                    return Some((s, (st, false, done)));
                }
                // A catalogue hiccup: keep watching.
                Err(e) => {
                    tracing::warn!(video = %id, error = format!("{e:#}"), "video events poll failed");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    })
    .boxed()
}

async fn snapshot(st: &AppState, id: Uuid) -> anyhow::Result<Snapshot> {
    let Some(video) = st.videos.get(id).await? else {
        return Ok(Snapshot::Gone);
    };
    let status = video.status.clone();
    let renditions = if status == READY { st.videos.renditions(id).await.unwrap_or_default() } else { vec![] };
    let progress = if status == PROCESSING { st.cache.progress(id).await.ok().flatten() } else { None };
    let view = serde_json::to_string(&VideoView::new(video, renditions, None))?;
    Ok(Snapshot::Video { status, view: view.into(), progress })
}

/// What one subscriber is sent: the changes between the snapshots it sees.
fn events(id: Uuid, first: Snapshot, rest: BoxStream<'static, Snapshot>) -> impl Stream<Item = Result<Event, Infallible>> {
    let sent = (None::<String>, None::<Progress>);
    futures::stream::iter([first])
        .chain(rest)
        .scan(sent, move |(status, progress), s| {
            let mut out = Vec::with_capacity(2);
            match s {
                Snapshot::Gone => out.push(Event::default().event("deleted").data(id.to_string())),
                Snapshot::Video { status: now, view, progress: p } => {
                    if status.as_deref() != Some(now.as_str()) {
                        out.push(Event::default().event("status").data(&*view));
                        *status = Some(now);
                    }
                    if let Some(p) = p.filter(|p| progress.as_ref() != Some(p)) {
                        out.push(Event::default().event("progress").json_data(&p).expect("progress serialises"));
                        *progress = Some(p);
                    }
                }
            }
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
        .map(Ok)
        .take_until(tokio::time::sleep(MAX_AGE))
        // Polled after its end (a tower layer may do so), it stays ended.
        .fuse()
}
