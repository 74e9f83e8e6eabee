//! GET/HEAD /live/{playback}/master.m3u8: a live stream's master for one
//! viewer, so live audiences get what VOD audiences get from this origin:
//! a session (counted per region, node and pathway like any view), the
//! bitrate cap (top rungs left out while it is on), and content steering
//! (every variant once per pathway, and `/steering/{playback}` deciding).
//!
//! The stream's own master comes from live-ingest (`LIVE_ORIGIN_URL`) and
//! is rewritten here by the same `shared::playlist::rewrite_master` as a
//! video's stored one. The secondary pathway is an edge that pulls `/live/`
//! through the front door: it re-streams the primary, it holds no copy.
//! live-ingest's refusals (404 not live, 503 not started) pass through as
//! they are.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::Problem;
use shared::layout;
use shared::ratelimit::Client;
use uuid::Uuid;

use crate::hls::{OriginState, ViewerQuery};

/// The live origin this origin reads live masters from.
#[derive(Clone)]
pub struct LiveOrigin {
    client: reqwest::Client,
    base: String,
}

impl LiveOrigin {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(5)).build()?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned() })
    }
}

pub async fn get_live_master(State(st): State<OriginState>, Path(playback): Path<String>, method: Method, Query(q): Query<ViewerQuery>, client: Client, headers: HeaderMap) -> Response {
    let Some(live) = st.live.as_ref() else {
        return Problem::new(StatusCode::NOT_FOUND, "no-live", "Live not served here", "This origin has no live origin (LIVE_ORIGIN_URL).").into_response();
    };
    let Ok(id) = Uuid::parse_str(&playback) else {
        return Problem::new(StatusCode::NOT_FOUND, "not-live", "Not live", "No broadcast is on air under this playback id.").into_response();
    };
    let res = match live.client.get(format!("{}/live/{id}/{}", live.base, layout::MASTER_PLAYLIST)).send().await {
        Ok(r) => r,
        Err(e) => return Problem::unavailable("the live origin", &anyhow::anyhow!(e)).into_response(),
    };
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if status != StatusCode::OK {
        // Not live, or not started yet: its problem (and Retry-After) as it is.
        let mut out = Response::builder().status(status);
        for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::CACHE_CONTROL] {
            if let Some(v) = res.headers().get(name.as_str()) {
                out = out.header(name, v.as_bytes());
            }
        }
        return out.body(axum::body::Body::from(res.bytes().await.unwrap_or_default())).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    let stored = match res.text().await {
        Ok(t) => t,
        Err(e) => return Problem::unavailable("the live origin", &anyhow::anyhow!(e)).into_response(),
    };
    let session = crate::master::viewer_session(&st, id, &q, client, &headers).await;
    crate::master::viewer_master(&st, id, format!("/live/{id}/"), &stored, session.as_ref(), q.pathway.as_deref(), None, &method)
}
