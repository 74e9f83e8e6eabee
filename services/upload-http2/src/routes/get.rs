//! GET /api/v1/videos/{video_id}: one video, with renditions and progress.

use axum::extract::State;
use axum::Json;
use shared::auth::Caller;
use shared::extract::VideoId;

use super::view::VideoView;
use super::AppState;
use crate::error::ApiError;

pub async fn get_video(State(st): State<AppState>, caller: Caller, VideoId(id): VideoId) -> Result<Json<VideoView>, ApiError> {
    let video = super::visible_video(&st, &caller, id).await?;
    let renditions = if video.status == "ready" { st.videos.renditions(id).await? } else { vec![] };
    // Progress is a nicety: a Redis outage must not fail the status call.
    let progress = if video.status == "processing" {
        st.cache.progress(id).await.unwrap_or_else(|e| {
            tracing::warn!(error = format!("{e:#}"), "progress unavailable");
            None
        })
    } else {
        None
    };
    Ok(Json(VideoView::new(video, renditions, progress)))
}
