//! DELETE /api/v1/videos/{video_id}: the video, its source and every object
//! any transcode attempt stored.
//!
//! Two phases: the row turns `deleting` first (which hides the video and
//! makes a running transcode cancel itself and remove its own objects), then
//! the objects go, then the row. If S3 fails in between, the answer is 503
//! and the row stays `deleting`, so repeating the DELETE finishes the job.

use axum::extract::State;
use axum::http::StatusCode;
use shared::extract::VideoId;
use shared::videos::Videos;

use super::AppState;
use crate::error::ApiError;

pub async fn delete_video(State(st): State<AppState>, VideoId(id): VideoId) -> Result<StatusCode, ApiError> {
    let video = st.videos.begin_delete(id).await?.ok_or(ApiError::VideoNotFound(id))?;
    Videos::delete_objects(&st.storage, &video).await.map_err(ApiError::Storage)?;
    st.videos.finish_delete(id).await?;
    if let Err(e) = st.cache.clear_progress(id).await {
        tracing::debug!(error = format!("{e:#}"), "could not clear progress");
    }
    tracing::info!(video_id = %id, "video deleted");
    Ok(StatusCode::NO_CONTENT)
}
