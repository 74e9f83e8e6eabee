//! The viewers API: live sessions and views per video, and live sessions
//! per serving node and region. Counts come from Redis (see
//! `shared::sessions`), so every origin answers the same.
//!
//! Access: the platform overview is an operator surface (admin key: 401
//! without a key, 403 with a creator's). A video's counts are anyone's for
//! a public or unlisted video; a private one's are its owner's and admins'
//! (anyone else gets the 404 of a missing video).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use shared::auth::{hidden, Caller};
use shared::error::Problem;
use shared::extract::VideoId;
use shared::sessions::Live;

use crate::hls::OriginState;

pub async fn for_video(State(st): State<OriginState>, VideoId(id): VideoId, caller: Caller) -> Response {
    match st.served(id).await {
        Ok(v) if !caller.may_see(v.owner, v.visibility) => return hidden("video", "video-not-found").into_response(),
        Ok(_) => {}
        Err(res) if res.status() == StatusCode::NOT_FOUND => return hidden("video", "video-not-found").into_response(),
        Err(res) => return res,
    }
    let counts = async { Ok::<_, anyhow::Error>((st.sessions.live(&[Live::Video(id)]).await?[0], st.sessions.views(id).await?)) };
    match counts.await {
        Ok((live, views)) => Json(json!({ "video_id": id, "live": live, "views": views })).into_response(),
        Err(e) => Problem::unavailable("viewer sessions", &e).into_response(),
    }
}

pub async fn overview(State(st): State<OriginState>, caller: Caller) -> Response {
    if let Err(denied) = caller.require_admin() {
        return denied.into_response();
    }
    match st.sessions.overview().await {
        Ok(o) => Json(o).into_response(),
        Err(e) => Problem::unavailable("viewer sessions", &e).into_response(),
    }
}
