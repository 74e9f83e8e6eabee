//! The traffic manager, on HLS Content Steering (RFC 8216bis §7.2):
//!
//! - GET /steering/{video_id}?sid=… — the steering manifest a player polls
//!   (`VERSION`, `TTL`, `PATHWAY-PRIORITY`); hls.js and Apple's players
//!   follow it with no custom code.
//! - GET /api/v1/videos/{video_id}/play — one playback URL, already
//!   steered, for players without steering. A private video's URL is given
//!   to its owner and admins only (anyone else, a caller without a key
//!   included, gets the 404 of a missing video, so its existence does not
//!   leak); an unlisted or public one to anyone. The URL of an unlisted or
//!   private video carries a playback token valid for PLAYBACK_TOKEN_TTL,
//!   and the answer says until when (`expires_at`).
//!
//! Per region: while the region's live viewers exceed the activation
//! threshold the secondary pathway (an edge that pulls from the primary,
//! not a copy of it) is active and takes the primary's excess, one session
//! per steering poll, until the primary is down to the release level; once
//! the region's viewers fall under that level, the secondary drains and
//! every session is steered back. The active flag lives in Redis so every
//! origin answers alike.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use shared::auth::{hidden, Caller};
use shared::error::Problem;
use shared::extract::VideoId;
use shared::layout;
use shared::sessions::{Live, Session, SessionId};

use crate::configuration::SteeringSettings;
use crate::hls::OriginState;

/// Where one session goes, from the region's state and live counts.
/// Returns (secondary active, send this session to the secondary).
pub fn decide(s: &SteeringSettings, active: bool, region_live: u64, primary_live: u64, on_secondary: bool) -> (bool, bool) {
    let active = if active { region_live >= s.release_below } else { region_live > s.activate_above };
    if !active {
        return (false, false);
    }
    // Sessions already moved stay; a primary session moves while the
    // primary holds more than its share.
    (true, on_secondary || primary_live > s.release_below)
}

#[derive(Debug, Deserialize)]
pub struct SteeringQuery {
    sid: Option<String>,
}

pub async fn get_steering(State(st): State<OriginState>, Path(raw_id): Path<String>, Query(q): Query<SteeringQuery>) -> Response {
    if let Err(p) = VideoId::parse(&raw_id) {
        return p.into_response();
    }
    let pathways = &st.steering.pathways;
    if pathways.is_empty() {
        return not_configured();
    }
    let primary = pathways[0].id.clone();
    let chosen = match q.sid.as_deref().and_then(SessionId::parse) {
        Some(sid) => session_steer(&st, &sid).await.unwrap_or_else(|e| {
            tracing::warn!(error = format!("{e:#}"), "steering without live counts: primary first");
            primary
        }),
        None => primary,
    };
    let mut priority = vec![chosen.clone()];
    priority.extend(pathways.iter().map(|p| p.id.clone()).filter(|p| *p != chosen));
    st.metrics.steering_answers.with_label_values(&[&chosen]).inc();
    let body = json!({ "VERSION": 1, "TTL": st.steering.ttl.0.as_secs(), "PATHWAY-PRIORITY": priority });
    Json(body).into_response()
}

/// [`steer`] for a session by id; an unknown one gets the primary.
async fn session_steer(st: &OriginState, sid: &SessionId) -> anyhow::Result<String> {
    match st.sessions.get(sid).await? {
        Some(session) => steer(st, &session).await,
        None => Ok(st.steering.pathways[0].id.clone()),
    }
}

/// Decides for one session, records a move, and returns its pathway.
async fn steer(st: &OriginState, session: &Session) -> anyhow::Result<String> {
    let pathways = &st.steering.pathways;
    let (primary, secondary) = (&pathways[0].id, &pathways[1].id);
    // A session issued before VIEWER_REGIONS changed may name any region.
    let region = &st.regions.label(Some(&session.region));
    let live = st.sessions.live(&[Live::Region(region), Live::Pathway(region, primary)]).await?;
    let (region_live, primary_live) = (live[0], live[1]);
    let flag = format!("secondary-active:{region}");
    let was = st.sessions.flag(&flag).await?;
    let (active, to_secondary) = decide(&st.steering, was, region_live, primary_live, session.pathway == *secondary);
    if active != was {
        tracing::info!(region, region_live, primary_live, "secondary pathway {}", if active { "activated" } else { "drained" });
        st.sessions.set_flag(&flag, active).await?;
    }
    st.metrics.steering_active.with_label_values(&[region]).set(active as i64);
    let to = if to_secondary { secondary } else { primary };
    if *to != session.pathway {
        st.sessions.move_to(&session.id, to).await?;
    }
    Ok(to.clone())
}

fn not_configured() -> Response {
    Problem::new(StatusCode::NOT_FOUND, "steering-not-configured", "Steering is not configured", "This origin has no STEERING_PATHWAYS; play the master playlist directly.").into_response()
}

#[derive(Debug, Deserialize)]
pub struct PlayQuery {
    region: Option<String>,
}

/// A session and the URL to play it from, steered once, now.
pub async fn play(State(st): State<OriginState>, VideoId(id): VideoId, Query(q): Query<PlayQuery>, caller: Caller, client: shared::ratelimit::Client, headers: axum::http::HeaderMap) -> Response {
    let served = match st.served(id).await {
        Ok(s) => s,
        // Missing, not ready or hidden: one answer, whoever asks.
        Err(res) if res.status() == StatusCode::NOT_FOUND => return hidden("video", "video-not-found").into_response(),
        Err(res) => return res,
    };
    if !caller.may_see(served.owner, served.visibility) {
        return hidden("video", "video-not-found").into_response();
    }
    let region = crate::master::viewer_region(&st.regions, q.region.as_deref(), &headers);
    let session = match crate::master::issue(&st, id, region, client).await {
        Ok(s) => s,
        Err(e) => return Problem::unavailable("viewer sessions", &e).into_response(),
    };
    let master = layout::public_hls_path(id, layout::MASTER_PLAYLIST);
    let sid = session.id.as_str();
    let signed = served.is_protected().then(|| st.signer.issue(id, st.token_ttl));
    let query = shared::playlist::viewer_query(Some(sid), signed.as_ref().map(|(t, _)| t.as_str()));
    let (pathway, url) = if st.steering.pathways.is_empty() {
        ("direct".to_owned(), format!("{master}?{query}"))
    } else {
        let pathway = match steer(&st, &session).await {
            Ok(p) => p,
            Err(e) => return Problem::unavailable("viewer sessions", &e).into_response(),
        };
        let base = &st.steering.pathways.iter().find(|p| p.id == pathway).expect("steer returns a configured pathway").base;
        (pathway.clone(), format!("{base}{master}?{query}&pathway={pathway}"))
    };
    let expires_at = signed.map(|(_, t)| rfc3339(t.expires));
    Json(json!({ "video_id": id, "session": sid, "region": session.region, "pathway": pathway, "url": url, "visibility": served.visibility, "expires_at": expires_at })).into_response()
}

fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SteeringSettings {
        SteeringSettings { activate_above: 3, release_below: 2, ..Default::default() }
    }

    #[test]
    fn the_secondary_activates_above_and_drains_below_with_hysteresis() {
        let s = settings();
        assert_eq!(decide(&s, false, 3, 3, false), (false, false), "at the threshold: not yet");
        assert_eq!(decide(&s, false, 4, 4, false), (true, true), "above: the excess moves");
        assert_eq!(decide(&s, true, 2, 2, true), (true, true), "between release and activation: still active, moved sessions stay");
        assert_eq!(decide(&s, true, 2, 2, false), (true, false), "the primary keeps its share");
        assert_eq!(decide(&s, true, 1, 0, true), (false, false), "below release: everyone back");
    }

    #[test]
    fn a_token_expiry_is_answered_in_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
