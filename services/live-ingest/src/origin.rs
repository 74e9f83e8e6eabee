//! The live origin, behind the edges: `GET /live/{playback}/master.m3u8`
//! and `GET /live/{playback}/{broadcast}/{rendition}/{object}`.
//!
//! - Media playlists block on `_HLS_msn`/`_HLS_part` until the timeline
//!   holds what was asked, at most three target durations (then 503), and
//!   answer 400 for a request past the Advance Part Limit (RFC 8216bis
//!   §6.2.5.2). `_HLS_skip=YES` gets a delta update.
//! - A part not written yet but next in line (the preload hint) is held
//!   until its first chunk exists (§6.2.6 lets the server block), then
//!   streamed chunk by chunk as the encoder writes them; the edges pass
//!   the chunks on to every viewer waiting in the same flight. A part the
//!   encoder abandons mid-way (it died) ends the response with an error,
//!   so no cache keeps half of it.
//! - Objects are under the broadcast's id, so every URL names one immutable
//!   thing forever: parts, segments and init segments are cached for a
//!   year. Playlists live about a part (`max-age=1`, the HTTP minimum);
//!   an answer to a blocking request is valid for that request, and lives
//!   six target durations, so an edge serves late joiners of that
//!   (msn, part) from cache.
//! - Segments older than memory holds come from the DVR recording in S3.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use media::llhls::names::Object;
use media::llhls::request::{PlaylistQuery, Want};
use media::llhls::timeline::Availability;
use shared::error::Problem;
use shared::layout::PLAYLIST_TYPE;
use tokio::time::Instant;
use uuid::Uuid;

use crate::broadcast::Broadcast;
use crate::master::master_playlist;
use crate::on_air::OnAir;
use crate::rendition::{PartLookup, Rendition};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const LIVE_PLAYLIST: &str = "public, max-age=1";

fn problem(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Response {
    let mut r = Problem::new(status, code, title, detail).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn not_live() -> Response {
    problem(StatusCode::NOT_FOUND, "not-live", "Not live", "No broadcast is on air under this playback id, or it ended long enough ago to be gone; an ended broadcast's replay is in the catalogue.")
}

fn body(content_type: &'static str, cache: HeaderValue, bytes: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CACHE_CONTROL, cache)], bytes.into()).into_response()
}

pub async fn get_master(State(on_air): State<OnAir>, Path(playback): Path<String>) -> Response {
    let Some(b) = Uuid::parse_str(&playback).ok().and_then(|p| on_air.by_playback(p)) else { return not_live() };
    match master_playlist(&b, on_air.settings.encoder.fps) {
        Some(text) => body(PLAYLIST_TYPE, HeaderValue::from_static(LIVE_PLAYLIST), text),
        None => {
            let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "not-started", "Broadcast starting", "The publisher is connected but no media is packaged yet. Retry in a second.");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

pub async fn get_object(State(on_air): State<OnAir>, Path((playback, broadcast, rendition, name)): Path<(String, String, String, String)>, RawQuery(query): RawQuery) -> Response {
    let Some(b) = Uuid::parse_str(&playback).ok().and_then(|p| on_air.by_playback(p)) else { return not_live() };
    if Uuid::parse_str(&broadcast).ok() != Some(b.id) {
        return problem(StatusCode::NOT_FOUND, "broadcast-over", "Broadcast over", "This broadcast is no longer on air; load the master playlist again for the current one.");
    }
    let Some(r) = b.rendition(&rendition).cloned() else {
        return problem(StatusCode::NOT_FOUND, "no-rendition", "No such rendition", format!("The broadcast has no rendition {rendition:?}; the master playlist lists them."));
    };
    let Some(object) = Object::parse(&name) else {
        return problem(StatusCode::NOT_FOUND, "no-object", "No such object", format!("{name:?} is not a live object name (index.m3u8, init-G.mp4, seg-N.m4s, part-N-I.m4s)."));
    };
    let patience = Duration::from_secs(3 * r.target_duration());
    match object {
        Object::Playlist => playlist(&on_air, &b, &r, query.as_deref().unwrap_or(""), patience).await,
        Object::Init { generation } => match r.init(generation) {
            Some(bytes) => body("video/mp4", HeaderValue::from_static(IMMUTABLE), bytes),
            None => problem(StatusCode::NOT_FOUND, "no-object", "No such init segment", "This rendition has no init segment of that generation."),
        },
        Object::Part { msn, index } => part(r.clone(), msn, index, patience).await,
        Object::Segment { msn } => match r.segment(msn) {
            Some(bytes) => body("video/iso.segment", HeaderValue::from_static(IMMUTABLE), bytes),
            None => from_dvr(&on_air, &b, &r, msn).await,
        },
    }
}

async fn playlist(on_air: &OnAir, b: &Broadcast, r: &Rendition, query: &str, patience: Duration) -> Response {
    let q = match PlaylistQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-playlist-query", "Bad playlist request", e.to_string()),
    };
    let mut cache = HeaderValue::from_static(LIVE_PLAYLIST);
    if let Some(want) = q.want {
        on_air.metrics.blocking_requests.inc();
        if let Err(res) = wait_for(r, want, patience, on_air).await {
            return res;
        }
        cache = HeaderValue::from_str(&format!("public, max-age={}", 6 * r.target_duration())).expect("ascii");
    }
    let reports: Vec<_> = b.renditions().iter().filter(|o| o.name != r.name).filter_map(|o| o.report()).collect();
    body(PLAYLIST_TYPE, cache, r.playlist(q.skip, &reports))
}

/// Holds a blocking request until the rendition has `want`.
async fn wait_for(r: &Rendition, want: Want, patience: Duration, on_air: &OnAir) -> Result<(), Response> {
    let mut changes = r.subscribe();
    let deadline = Instant::now() + patience;
    loop {
        match r.availability(want) {
            Availability::Ready => return Ok(()),
            Availability::TooFar => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "too-far-ahead",
                    "Too far ahead",
                    format!("_HLS_msn={} is past what the playlist can reach soon; ask for the next part or segment after the last one listed.", want.msn),
                ))
            }
            Availability::Wait => {}
        }
        if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
            on_air.metrics.blocking_timeouts.inc();
            let mut res = problem(StatusCode::SERVICE_UNAVAILABLE, "not-yet", "Not available yet", "The playlist did not reach the requested part within three target durations; the stream may have stalled. Retry.");
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(res);
        }
    }
}

async fn part(r: Arc<Rendition>, msn: u64, index: u32, patience: Duration) -> Response {
    let mut changes = r.subscribe();
    let deadline = Instant::now() + patience;
    loop {
        match r.part(msn, index) {
            PartLookup::Here(bytes) => return body("video/iso.segment", HeaderValue::from_static(IMMUTABLE), bytes),
            PartLookup::Writing(_) => break,
            PartLookup::Gone => return problem(StatusCode::NOT_FOUND, "no-part", "No such part", "This part is not in the playlist's window, or was never written (a preload hint the encoder did not follow)."),
            PartLookup::Soon => {}
        }
        if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
            return problem(StatusCode::SERVICE_UNAVAILABLE, "not-yet", "Not available yet", "The part was not written within three target durations. Retry.");
        }
    }
    let growing = Growing { r, msn, index, changes, deadline, sent_chunks: 0, sent_bytes: 0, done: false };
    body("video/iso.segment", HeaderValue::from_static(IMMUTABLE), Body::from_stream(futures::stream::unfold(growing, Growing::next)))
}

/// A part streamed while it is written: what was sent of it, chunks and bytes.
struct Growing {
    r: Arc<Rendition>,
    msn: u64,
    index: u32,
    changes: tokio::sync::watch::Receiver<u64>,
    deadline: Instant,
    sent_chunks: usize,
    sent_bytes: usize,
    done: bool,
}

impl Growing {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        loop {
            match self.r.part(self.msn, self.index) {
                PartLookup::Writing(chunks) if chunks.len() > self.sent_chunks => {
                    let new: Bytes = chunks[self.sent_chunks..].concat().into();
                    self.sent_chunks = chunks.len();
                    self.sent_bytes += new.len();
                    return Some((Ok(new), self));
                }
                PartLookup::Writing(_) => {}
                // Complete: the rest of it (its last fragment).
                PartLookup::Here(bytes) if bytes.len() >= self.sent_bytes => {
                    self.done = true;
                    let rest = bytes.slice(self.sent_bytes..);
                    return Some((Ok(rest), self));
                }
                PartLookup::Here(_) | PartLookup::Soon | PartLookup::Gone => {
                    self.done = true;
                    return Some((Err(std::io::Error::other("the encoder abandoned this part while it was being written")), self));
                }
            }
            if !matches!(tokio::time::timeout_at(self.deadline, self.changes.changed()).await, Ok(Ok(()))) {
                self.done = true;
                return Some((Err(std::io::Error::other("the part was not completed within three target durations")), self));
            }
        }
    }
}

async fn from_dvr(on_air: &OnAir, b: &Broadcast, r: &Rendition, msn: u64) -> Response {
    let key = crate::dvr::key(b.id, &r.name, Object::Segment { msn });
    match on_air.storage().get(&key).await {
        Ok(Some(obj)) => body("video/iso.segment", HeaderValue::from_static(IMMUTABLE), Body::from_stream(tokio_util::io::ReaderStream::new(obj.body.into_async_read()))),
        Ok(None) => problem(StatusCode::NOT_FOUND, "no-segment", "No such segment", "This segment is not in the broadcast's recording."),
        Err(e) => {
            tracing::error!(key, error = format!("{e:#}"), "DVR read failed");
            problem(StatusCode::BAD_GATEWAY, "storage-unavailable", "Recording unavailable", "The DVR recording could not be read. Retry shortly.")
        }
    }
}
