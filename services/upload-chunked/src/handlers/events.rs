//! GET /api/v1/uploads/{id}/events: upload progress as server-sent events.
//!
//! `progress` events carry `{offset, length, bytes_per_second}` whenever
//! they change; a `complete` event (with the video's path) ends the stream.
//! The stream polls Redis rather than subscribing, so a watcher costs no
//! dedicated connection, and it re-reads the committed state from the store
//! every few seconds, so it stays truthful when Redis is down. It ends by
//! itself after an hour; EventSource clients reconnect.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use uuid::Uuid;

use super::AppState;
use crate::error::TusError;
use crate::progress::UploadProgress;
use crate::store::Upload;

const POLL: Duration = Duration::from_millis(250);
const STORE_EVERY: u32 = 12;
const MAX_POLLS: u32 = 4 * 3600;

pub async fn events(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::try_parse(&id) else {
        return TusError::NotFound.into_response();
    };
    match st.store.get(id).await {
        Ok(Some(up)) => Sse::new(stream(st, up))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Ok(None) => TusError::NotFound.into_response(),
        Err(e) => TusError::Internal(e).into_response(),
    }
}

fn event(p: &UploadProgress) -> Event {
    let kind = if p.complete { "complete" } else { "progress" };
    Event::default()
        .event(kind)
        .json_data(p)
        .expect("progress serialises")
}

fn stream(st: AppState, first: Upload) -> impl Stream<Item = Result<Event, Infallible>> {
    let initial = UploadProgress::from(&first);
    futures::stream::unfold(
        (st, Some(initial), None::<UploadProgress>, 0u32, false),
        move |(st, mut pending, mut last, mut polls, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(p) = pending.take() {
                    if last.as_ref() != Some(&p) {
                        let finished = p.complete;
                        let ev = event(&p);
                        last = Some(p);
                        return Some((Ok(ev), (st, None, last, polls, finished)));
                    }
                }
                if polls >= MAX_POLLS {
                    return None;
                }
                polls += 1;
                tokio::time::sleep(POLL).await;
                pending = if polls % STORE_EVERY == 0 {
                    match st.store.get(first.id).await {
                        // The committed offset trails the bytes in flight; never report going backwards.
                        Ok(Some(up)) => Some(UploadProgress::from(&up)).filter(|p| {
                            p.complete || last.as_ref().is_none_or(|l| p.offset > l.offset)
                        }),
                        Ok(None) => return None,
                        Err(_) => None,
                    }
                } else {
                    st.board.read(first.id).await
                };
            }
        },
    )
}
