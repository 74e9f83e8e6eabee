//! DELETE /api/v1/videos/{video_id}: the video, its source and every object
//! any transcode attempt stored.
//!
//! Two phases: the row turns `deleting` first (which hides the video and
//! makes a running transcode cancel itself and remove its own objects), then
//! the objects go, then the row. If S3 fails in between, the answer is 503
//! and the row stays `deleting`, so repeating the DELETE finishes the job.
//! Before the row goes, a purge of `/hls/{id}/` is published to every edge
//! (Redis down: 503 too, and the row stays).

use axum::extract::State;
use axum::http::StatusCode;
use shared::auth::Caller;
use shared::extract::VideoId;
use shared::purge::PurgeRequest;
use uuid::Uuid;
use shared::videos::Videos;

use super::AppState;
use crate::error::ApiError;

pub async fn delete_video(State(st): State<AppState>, caller: Caller, VideoId(id): VideoId) -> Result<StatusCode, ApiError> {
    super::owned_video(&st, &caller, id).await?;
    let video = st.videos.begin_delete(id).await?.ok_or(ApiError::VideoNotFound(id))?;
    Videos::delete_objects(&st.storage, &video).await.map_err(ApiError::Storage)?;
    // The edges next: without this a deleted video plays from their caches
    // for as long as its segments are fresh (a year). Before the row goes,
    // so a failed publish is retried by repeating the DELETE.
    shared::purge::publish(&st.cache, Uuid::new_v4(), &PurgeRequest::video(id)).await.map_err(ApiError::Purge)?;
    st.videos.finish_delete(id).await?;
    if let Err(e) = st.cache.clear_progress(id).await {
        tracing::debug!(error = format!("{e:#}"), "could not clear progress");
    }
    tracing::info!(video_id = %id, "video deleted");
    Ok(StatusCode::NO_CONTENT)
}
