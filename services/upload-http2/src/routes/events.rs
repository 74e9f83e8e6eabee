//! GET /api/v1/videos/{video_id}/events: a video's processing as
//! server-sent events.
//!
//! - `status` whenever the status changes, with the whole video;
//! - `progress` while processing: `{stage, percent, fps, speed}`;
//! - the stream ends after `status` reaches `ready` or `failed`, or `deleted`.
//!
//! It polls (PostgreSQL for the status, Redis for progress) instead of
//! subscribing, so a watcher costs no dedicated connection, and it ends by
//! itself after an hour; EventSource clients reconnect.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use shared::cache::Progress;
use shared::extract::VideoId;
use uuid::Uuid;

use super::view::VideoView;
use super::AppState;
use crate::error::ApiError;

const POLL: Duration = Duration::from_millis(500);
const MAX_POLLS: u32 = 2 * 3600;

pub async fn video_events(State(st): State<AppState>, VideoId(id): VideoId) -> Result<Response, ApiError> {
    st.videos.get(id).await?.ok_or(ApiError::VideoNotFound(id))?;
    Ok(Sse::new(stream(st, id)).keep_alive(KeepAlive::default()).into_response())
}

struct Watch {
    st: AppState,
    id: Uuid,
    status: Option<String>,
    progress: Option<Progress>,
    polls: u32,
    done: bool,
}

fn stream(st: AppState, id: Uuid) -> impl Stream<Item = Result<Event, Infallible>> {
    let w = Watch { st, id, status: None, progress: None, polls: 0, done: false };
    futures::stream::unfold(w, |mut w| async move {
        while !w.done && w.polls < MAX_POLLS {
            if w.polls > 0 {
                tokio::time::sleep(POLL).await;
            }
            w.polls += 1;
            let video = match w.st.videos.get(w.id).await {
                Ok(Some(v)) => v,
                Ok(None) => {
                    w.done = true;
                    return Some((Ok(Event::default().event("deleted").data(w.id.to_string())), w));
                }
                // A catalogue hiccup: keep watching.
                Err(_) => continue,
            };
            if w.status.as_deref() != Some(video.status.as_str()) {
                w.status = Some(video.status.clone());
                w.done = matches!(video.status.as_str(), "ready" | "failed");
                let renditions = if video.status == "ready" { w.st.videos.renditions(w.id).await.unwrap_or_default() } else { vec![] };
                let view = VideoView::new(video, renditions, None);
                return Some((Ok(Event::default().event("status").json_data(&view).expect("view serialises")), w));
            }
            if video.status == "processing" {
                if let Ok(Some(p)) = w.st.cache.progress(w.id).await {
                    if w.progress.as_ref() != Some(&p) {
                        w.progress = Some(p.clone());
                        return Some((Ok(Event::default().event("progress").json_data(&p).expect("progress serialises")), w));
                    }
                }
            }
        }
        None
    })
}
