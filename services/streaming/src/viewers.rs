//! The viewers API: live sessions and views per video, and live sessions
//! per serving node and region. Counts come from Redis (see
//! `shared::sessions`), so every origin answers the same.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use shared::error::Problem;
use shared::extract::VideoId;
use shared::sessions::Live;

use crate::hls::OriginState;

pub async fn for_video(State(st): State<OriginState>, VideoId(id): VideoId) -> Response {
    let counts = async { Ok::<_, anyhow::Error>((st.sessions.live(&[Live::Video(id)]).await?[0], st.sessions.views(id).await?)) };
    match counts.await {
        Ok((live, views)) => Json(json!({ "video_id": id, "live": live, "views": views })).into_response(),
        Err(e) => Problem::unavailable("viewer sessions", &e).into_response(),
    }
}

pub async fn overview(State(st): State<OriginState>) -> Response {
    match st.sessions.overview().await {
        Ok(o) => Json(o).into_response(),
        Err(e) => Problem::unavailable("viewer sessions", &e).into_response(),
    }
}
