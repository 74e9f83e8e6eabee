//! GET /api/v1/uploads/{id}/events: upload progress as server-sent events.
//!
//! `progress` events carry `{offset, length, bytes_per_second}` whenever
//! they change; a `complete` event (with the video's path) ends the stream.
//!
//! However many clients watch an upload, one watcher polls for it and fans
//! its snapshots out through [`shared::watch`], which also caps the
//! subscribers (503 beyond `SSE_MAX_SUBSCRIBERS`). The watcher reads Redis
//! four times a second and re-reads the committed state from the store every
//! few seconds, so it stays truthful when Redis is down. A subscriber's
//! stream ends by itself after an hour; EventSource clients reconnect.
//!
//! Like every operation on an upload, it needs a key and is the owner's or
//! an admin's: anyone else gets the 404 of a missing upload. Each
//! subscriber is checked on its own before it joins the shared watcher.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use shared::auth::Caller;
use shared::error::Problem;
use shared::watch::Hub;
use uuid::Uuid;

use super::{owned, AppState};
use crate::error::TusError;
use crate::progress::UploadProgress;

const POLL: Duration = Duration::from_millis(250);
const STORE_EVERY: u32 = 12;
const MAX_AGE: Duration = Duration::from_secs(3600);
/// The watcher's first read of the store answers within this, or it is down.
const FIRST_WITHIN: Duration = Duration::from_secs(5);

/// One upload as a poll saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Snapshot {
    /// No such upload: never was, terminated or reclaimed.
    Gone,
    Upload(UploadProgress),
}

/// The watchers of upload-chunked: one per watched upload.
pub type UploadWatch = Hub<Uuid, Snapshot>;

pub async fn events(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Response {
    let me = match caller.require() {
        Ok(me) => me,
        Err(denied) => return TusError::from(denied).into_response(),
    };
    let Ok(id) = Uuid::try_parse(&id) else {
        return TusError::NotFound.into_response();
    };
    match tokio::time::timeout(FIRST_WITHIN, owned(&st, me, id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(TusError::Internal(e))) => return Problem::unavailable("the upload store (PostgreSQL)", &e).into_response(),
        Ok(Err(e)) => return e.into_response(),
        Err(_) => return Problem::unavailable("the upload store (PostgreSQL)", &anyhow::anyhow!("no answer within {FIRST_WITHIN:?}")).into_response(),
    }
    let source = st.clone();
    let sub = match st.events.subscribe(id, move || poll(source, id)) {
        Ok(sub) => sub,
        Err(full) => return full.into_response(),
    };
    let mut snapshots = sub.into_stream().boxed();
    match tokio::time::timeout(FIRST_WITHIN, snapshots.next()).await {
        Err(_) => Problem::unavailable("the upload store (PostgreSQL)", &anyhow::anyhow!("no answer within {FIRST_WITHIN:?}")).into_response(),
        Ok(None | Some(Snapshot::Gone)) => TusError::NotFound.into_response(),
        Ok(Some(first)) => Sse::new(stream(first, snapshots)).keep_alive(KeepAlive::default()).into_response(),
    }
}

fn event(p: &UploadProgress) -> Event {
    let kind = if p.complete { "complete" } else { "progress" };
    Event::default().event(kind).json_data(p).expect("progress serialises")
}

/// What one subscriber is sent: every snapshot it sees, until the upload
/// completes or goes.
fn stream(first: Snapshot, rest: BoxStream<'static, Snapshot>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::iter([first])
        .chain(rest)
        .take_while(|s| futures::future::ready(*s != Snapshot::Gone))
        .filter_map(|s| {
            futures::future::ready(match s {
                Snapshot::Upload(p) => Some(Ok(event(&p))),
                Snapshot::Gone => None,
            })
        })
        .take_until(tokio::time::sleep(MAX_AGE))
        // Polled after its end (a tower layer may do so), it stays ended.
        .fuse()
}

/// The watcher's state between polls.
struct Poller {
    st: AppState,
    id: Uuid,
    polls: u32,
    last: Option<UploadProgress>,
    done: bool,
}

/// The watcher's source: one snapshot per poll (the last known one when a
/// poll learns nothing new), ending after completion or disappearance.
fn poll(st: AppState, id: Uuid) -> BoxStream<'static, Snapshot> {
    let poller = Poller { st, id, polls: 0, last: None, done: false };
    futures::stream::unfold(poller, |mut p| async move {
        if p.done {
            return None;
        }
        loop {
            if p.polls > 0 {
                tokio::time::sleep(POLL).await;
            }
            p.polls += 1;
            let fresh = if p.polls == 1 || p.polls % STORE_EVERY == 0 {
                match p.st.store.get(p.id).await {
                    // The committed offset trails the bytes in flight; never report going backwards.
                    Ok(Some(up)) => Some(UploadProgress::from(&up))
                        .filter(|n| n.complete || p.last.as_ref().is_none_or(|l| n.offset > l.offset)),
                    Ok(None) => {
                        p.done = true;
                        return Some((Snapshot::Gone, p));
                    }
                    Err(e) => {
                        tracing::warn!(upload_id = %p.id, error = format!("{e:#}"), "upload events poll failed");
                        None
                    }
                }
            } else {
                p.st.board.read(p.id).await
            };
            if let Some(n) = fresh {
                p.done = n.complete;
                p.last = Some(n);
            }
            if let Some(last) = p.last.clone() {
                return Some((Snapshot::Upload(last), p));
            }
        }
    })
    .boxed()
}
