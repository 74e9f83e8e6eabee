//! GET/HEAD /hls/{video_id}/master.m3u8: the one per-viewer response.
//!
//! A request without a live session id is issued one (and counts as a
//! view), once per client and video per VIEW_WINDOW: a client that asks
//! again without its id gets the same session back, so refetching in a
//! loop counts one view. A request with an id gets that session's master
//! again. The route is rate-limited per client (RATE_LIMIT_SESSIONS, see
//! `startup`). Either way
//! the stored master playlist is rewritten for the session: its id on every
//! URI, the top rungs left out if it was issued under the bitrate cap, and,
//! with steering configured, every variant once per pathway plus the
//! EXT-X-CONTENT-STEERING tag. `?pathway=ID` pins one pathway (the play API's
//! URLs, for players without steering).
//!
//! Without Redis the viewer still gets a playable master, just without a
//! session: counts are advisory, playback is not.
//!
//! The master of an unlisted or private video needs a playback token
//! ([`crate::access`]), and its rewrite carries the token on every URI it
//! emits, so media playlists (and through them segments and the content
//! key) are requested with it.


use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use shared::error::Problem;
use shared::extract::VideoId;
use shared::layout;
use shared::playlist::{rewrite_master, MasterOptions};
use shared::ratelimit::Client;
use shared::sessions::{Issued, Regions, Session, SessionId};
use uuid::Uuid;

use crate::access::{mark_signed, request_token};
use crate::hls::{not_found, private_text, OriginState, ViewerQuery};

/// Header naming the region a viewer is in, set by a geo-aware load balancer.
pub const REGION_HEADER: &str = "x-viewer-region";

/// On a route of its own, so that the session limit applies to masters only.
pub async fn get_master(State(st): State<OriginState>, VideoId(id): VideoId, method: Method, RawQuery(raw): RawQuery, Query(q): Query<ViewerQuery>, client: Client, headers: HeaderMap) -> Response {
    let served = match st.served(id).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let token = request_token(raw.as_deref(), &headers);
    let res = match st.admit(id, &served, token) {
        Ok(()) => master(&st, id, &served.prefix, &method, &q, token.filter(|_| served.is_protected()), client, &headers).await,
        Err(refused) => refused,
    };
    if served.is_protected() {
        mark_signed(res)
    } else {
        res
    }
}

/// The viewer's master, its access already checked; `token` goes on every URI.
#[allow(clippy::too_many_arguments)]
async fn master(st: &OriginState, id: Uuid, prefix: &str, method: &Method, q: &ViewerQuery, token: Option<&str>, client: Client, headers: &HeaderMap) -> Response {
    let key = format!("{prefix}{}", layout::MASTER_PLAYLIST);
    let stored = match st.playlist(&key).await {
        Ok(Some(text)) => text,
        Ok(None) => return not_found(format!("video {id} has no master playlist")),
        Err(e) => return Problem::unavailable("object storage", &e).into_response(),
    };
    let session = viewer_session(st, id, q, client, headers).await;
    viewer_master(st, id, layout::public_hls_path(id, ""), &stored, session.as_ref(), q.pathway.as_deref(), token, method)
}

/// A viewer's copy of a stored master: its session (and token) on every
/// URI, the rungs the cap left out for it, and every variant once per
/// pathway with the steering server of `id`, or only the `pinned` pathway.
/// `public_prefix` is where the master's relative URIs live on a pathway
/// (`/hls/{id}/`, `/live/{playback}/`).
#[allow(clippy::too_many_arguments)]
pub fn viewer_master(st: &OriginState, id: Uuid, public_prefix: String, stored: &str, session: Option<&Session>, pinned: Option<&str>, token: Option<&str>, method: &Method) -> Response {
    let pathways = &st.steering.pathways;
    let pinned = pinned.and_then(|p| pathways.iter().find(|x| x.id == p));
    let query = shared::playlist::viewer_query(session.map(|s| s.id.as_str()), token);
    let opts = MasterOptions {
        drop_top_rungs: session.map_or(0, |s| s.dropped_rungs),
        query: query.clone(),
        public_prefix,
        pathways: match pinned {
            Some(p) => vec![p.clone()],
            None => pathways.clone(),
        },
        steering_uri: (pinned.is_none() && !pathways.is_empty()).then(|| {
            let q = if query.is_empty() { String::new() } else { format!("?{query}") };
            format!("{}/steering/{id}{q}", st.steering.server_url.trim_end_matches('/'))
        }),
    };
    let (body, dropped) = rewrite_master(stored, &opts);
    let mut res = private_text(layout::PLAYLIST_TYPE, body, method, &st.metrics);
    let h = res.headers_mut();
    let cap = if dropped.is_empty() { "none".to_owned() } else { dropped.iter().map(|h| format!("{h}p")).collect::<Vec<_>>().join(",") };
    h.insert("x-bitrate-cap", HeaderValue::from_str(&cap).expect("ascii"));
    if let Some(s) = session {
        h.insert("x-session-id", HeaderValue::from_str(s.id.as_str()).expect("hex"));
    }
    res
}

/// The viewer's session for `id` (see [`session_for`]); without Redis, none:
/// the viewer still gets a playable master.
pub async fn viewer_session(st: &OriginState, id: Uuid, q: &ViewerQuery, client: Client, headers: &HeaderMap) -> Option<Session> {
    let region = viewer_region(&st.regions, q.region.as_deref(), headers);
    match session_for(st, id, q.sid.as_deref(), region, client).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "viewer session unavailable; serving a master without one");
            None
        }
    }
}

/// The caller's live session for this video, or its client's, or a new one.
async fn session_for(st: &OriginState, video: Uuid, sid: Option<&str>, region: String, client: Client) -> anyhow::Result<Session> {
    if let Some(sid) = sid.and_then(SessionId::parse) {
        if let Some(s) = st.sessions.get(&sid).await?.filter(|s| s.video == video) {
            st.heartbeats.beat(&s.id);
            return Ok(s);
        }
    }
    issue(st, video, region, client).await
}

/// The viewer's region: the query's, else the load balancer's header;
/// "other" unless it is a configured one.
pub fn viewer_region(regions: &Regions, query: Option<&str>, headers: &HeaderMap) -> String {
    regions.label(query.or_else(|| headers.get(REGION_HEADER).and_then(|v| v.to_str().ok())))
}

/// A new session (the cap and the primary pathway as they are now), or the
/// one this client was issued for this video within VIEW_WINDOW. The
/// platform's own requests ([`Client::Internal`]) cannot be told apart, so
/// each gets a new one.
pub async fn issue(st: &OriginState, video: Uuid, region: String, client: Client) -> anyhow::Result<Session> {
    let session = Session {
        id: SessionId::new(),
        video,
        region,
        pathway: st.steering.pathways.first().map_or_else(|| "direct".to_owned(), |p| p.id.clone()),
        dropped_rungs: st.cap.rungs_to_drop(),
    };
    match client {
        Client::Addr(_) => {
            if let Issued::Again(prior) = st.sessions.issue_once(&session, &client.key(), st.view_window).await? {
                st.metrics.sessions_reused.inc();
                st.heartbeats.beat(&prior.id);
                return Ok(prior);
            }
        }
        Client::Internal => st.sessions.issue(&session).await?,
    }
    st.metrics.sessions_issued.inc();
    if session.dropped_rungs > 0 {
        st.metrics.capped_sessions.inc();
    }
    Ok(session)
}
