//! `/api/v1/live`: creators create, list, read and delete their live
//! streams with their API keys (admins see all). Creation returns the
//! stream key once; reads add what is on air now (publishing or in the
//! grace period, the ingest's measured bitrate and frame rate), and reading
//! one stream its live viewers (sessions the origin issued with its master
//! and the edges keep alive).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::Caller;
use shared::error::Problem;
use uuid::Uuid;

use crate::catalogue::LiveStream;
use crate::on_air::OnAir;

const TITLE_MAX: usize = 200;
const LIST_LIMIT: i64 = 100;
/// A create request is a title: the body is bounded well below axum's 2 MB
/// default, which any caller (the key is checked after the body is read)
/// could otherwise make us buffer.
pub const BODY_LIMIT: usize = 16 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
}

fn internal(e: &anyhow::Error) -> Response {
    Problem::internal(e).into_response()
}

pub(crate) fn view(on_air: &OnAir, s: &LiveStream) -> Value {
    let settings = &on_air.settings;
    let b = on_air.by_stream(s.id);
    let on_air_now = b.map(|b| {
        let stats = b.ingest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        json!({
            "broadcast_id": b.id,
            "publishing": b.is_publishing(),
            "started_at": time::OffsetDateTime::from(b.started).format(&time::format_description::well_known::Rfc3339).ok(),
            "ingest_bitrate_bps": stats.bitrate_bps,
            "ingest_fps": (stats.fps * 10.0).round() / 10.0,
            "renditions": b.renditions().iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        })
    });
    json!({
        "id": s.id,
        "title": s.title,
        "state": s.state,
        "owner_id": s.owner_id,
        "key_prefix": s.key_prefix,
        "playback_id": s.playback_id,
        "ingest_url": settings.ingest_url,
        "playback_url": format!("{}/live/{}/master.m3u8", settings.playback_base.trim_end_matches('/'), s.playback_id),
        "replay_video_id": s.replay_video_id,
        "created_at": s.created_at.format(&time::format_description::well_known::Rfc3339).ok(),
        "on_air": on_air_now,
    })
}

fn hidden() -> Response {
    shared::auth::hidden("live stream", "live-stream-not-found").into_response()
}

pub async fn create(State(on_air): State<OnAir>, caller: Caller, body: Result<Bytes, BytesRejection>) -> Response {
    let owner = match caller.require() {
        Ok(p) => p.id,
        Err(d) => return d.into_response(),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return Problem::new(e.status(), "bad-body", "Request body refused", format!("Send a JSON object {{\"title\": \"…\"}} of at most {BODY_LIMIT} bytes: {e}")).into_response(),
    };
    let parsed: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, "bad-json", "Bad request body", format!("Send a JSON object {{\"title\": \"…\"}}: {e}")).into_response(),
    };
    let title = parsed.title.trim();
    if title.is_empty() || title.chars().count() > TITLE_MAX || title.chars().any(char::is_control) {
        return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-title", "Bad title", format!("The title must be 1 to {TITLE_MAX} characters without control characters.")).into_response();
    }
    match on_air.streams.create(owner, title).await {
        Ok((s, key)) => {
            let mut v = view(&on_air, &s);
            v["stream_key"] = json!(key.expose());
            (StatusCode::CREATED, [("location", format!("/api/v1/live/{}", s.id))], Json(v)).into_response()
        }
        Err(e) => internal(&e),
    }
}

pub async fn list(State(on_air): State<OnAir>, caller: Caller) -> Response {
    let p = match caller.require() {
        Ok(p) => p.clone(),
        Err(d) => return d.into_response(),
    };
    let owner = (!p.is_admin()).then_some(p.id);
    match on_air.streams.list(owner, LIST_LIMIT).await {
        Ok(streams) => Json(json!({ "items": streams.iter().map(|s| view(&on_air, s)).collect::<Vec<_>>() })).into_response(),
        Err(e) => internal(&e),
    }
}

/// The stream if this caller may act on it; the same 404 otherwise.
pub(crate) async fn visible(on_air: &OnAir, caller: &Caller, id: &str) -> Result<LiveStream, Response> {
    if let Err(d) = caller.require() {
        return Err(d.into_response());
    }
    let Ok(id) = Uuid::parse_str(id) else { return Err(hidden()) };
    match on_air.streams.get(id).await {
        Ok(Some(s)) if caller.may_act_on(Some(s.owner_id)) => Ok(s),
        Ok(_) => Err(hidden()),
        Err(e) => Err(internal(&e)),
    }
}

pub async fn get(State(on_air): State<OnAir>, caller: Caller, Path(id): Path<String>) -> Response {
    match visible(&on_air, &caller, &id).await {
        Ok(s) => {
            let mut v = view(&on_air, &s);
            // Sessions are counted per playback id (the id the master is issued for).
            // Without Redis the count is unknown, not zero.
            v["viewers"] = match on_air.sessions.live(&[shared::sessions::Live::Video(s.playback_id)]).await {
                Ok(n) => json!(n[0]),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "live viewer count unavailable");
                    Value::Null
                }
            };
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

pub async fn delete(State(on_air): State<OnAir>, caller: Caller, Path(id): Path<String>) -> Response {
    let s = match visible(&on_air, &caller, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if on_air.by_stream(s.id).is_some_and(|b| !b.ended()) {
        return Problem::new(StatusCode::CONFLICT, "stream-on-air", "Stream on air", "Stop the publisher and wait for the grace period to end (the replay is being made), then delete.").into_response();
    }
    match on_air.streams.delete(s.id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(&e),
    }
}
