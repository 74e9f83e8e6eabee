//! PATCH /api/v1/videos/{video_id}: `{"visibility": "public" | "unlisted" | "private"}`.
//!
//! Owner or admin. A change of visibility purges the video from every edge:
//! their cached copies carry the old answer to "does this need a token?".
//! A video encoded while public stays unencrypted when made private (it is
//! still only served with a signed URL); re-encoding is not implied.

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use shared::auth::Caller;
use shared::extract::VideoId;
use shared::purge::PurgeRequest;
use shared::videos::Visibility;
use uuid::Uuid;

use super::view::VideoView;
use super::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    visibility: Visibility,
}

pub async fn update_video(State(st): State<AppState>, caller: Caller, VideoId(id): VideoId, body: Bytes) -> Result<Json<VideoView>, ApiError> {
    let before = super::owned_video(&st, &caller, id).await?;
    let change: Change = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidField(format!("expected {{\"visibility\": \"public\" | \"unlisted\" | \"private\"}}: {e}")))?;
    let video = st.videos.set_visibility(id, change.visibility).await?.ok_or(ApiError::VideoNotFound(id))?;
    // Always, not only on a change: a repeat after a failed publish must purge.
    shared::purge::publish(&st.cache, Uuid::new_v4(), &PurgeRequest::video(id)).await.map_err(ApiError::Purge)?;
    tracing::info!(video_id = %id, from = before.visibility.as_str(), to = video.visibility.as_str(), "visibility set");
    Ok(Json(VideoView::new(video, vec![], None)))
}
