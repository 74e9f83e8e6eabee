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
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::Problem;
use shared::layout;
use shared::playlist::{rewrite_master, MasterOptions};
use shared::ratelimit::Client;
use uuid::Uuid;

use crate::hls::{private_text, OriginState, ViewerQuery};

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
    let region = crate::master::viewer_region(&st.regions, q.region.as_deref(), &headers);
    let session = match crate::master::session_for(&st, id, q.sid.as_deref(), region, client).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "viewer session unavailable; serving a live master without one");
            None
        }
    };
    let pathways = &st.steering.pathways;
    let pinned = q.pathway.as_deref().and_then(|p| pathways.iter().find(|x| x.id == p));
    let query = shared::playlist::viewer_query(session.as_ref().map(|s| s.id.as_str()), None);
    let opts = MasterOptions {
        drop_top_rungs: session.as_ref().map_or(0, |s| s.dropped_rungs),
        query: query.clone(),
        public_prefix: format!("/live/{id}/"),
        pathways: match pinned {
            Some(p) => vec![p.clone()],
            None => pathways.clone(),
        },
        steering_uri: (pinned.is_none() && !pathways.is_empty()).then(|| {
            let q = if query.is_empty() { String::new() } else { format!("?{query}") };
            format!("{}/steering/{id}{q}", st.steering.server_url.trim_end_matches('/'))
        }),
    };
    let (body, dropped) = rewrite_master(&stored, &opts);
    let mut res = private_text(layout::PLAYLIST_TYPE, body, &method, &st.metrics);
    let h = res.headers_mut();
    let cap = if dropped.is_empty() { "none".to_owned() } else { dropped.iter().map(|h| format!("{h}p")).collect::<Vec<_>>().join(",") };
    h.insert("x-bitrate-cap", HeaderValue::from_str(&cap).expect("ascii"));
    if let Some(s) = &session {
        h.insert("x-session-id", HeaderValue::from_str(s.id.as_str()).expect("hex"));
    }
    res
}
