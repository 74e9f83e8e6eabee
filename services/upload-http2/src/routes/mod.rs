//! The router: one handler per operation.

mod create;
mod delete;
mod events;
mod get;
mod list;
mod update;
mod view;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use shared::cache::Cache;
use shared::queue::Publisher;
use shared::ratelimit::RateLimit;
use shared::storage::Storage;
use shared::auth::Caller;
use shared::videos::{Video, Videos};
use uuid::Uuid;

use crate::configuration::UploadSettings;
use crate::error::ApiError;

pub use view::VideoView;

#[derive(Clone)]
pub struct AppState {
    pub videos: Videos,
    pub publisher: Arc<Publisher>,
    pub storage: Storage,
    pub cache: Cache,
    pub upload: UploadSettings,
    pub metrics: UploadMetrics,
    /// Concurrent uploads and body bytes in flight, for the whole instance.
    pub budget: shared::budget::Budget,
    /// One watcher per video for the event streams, shared by their subscribers.
    pub events: events::VideoWatch,
}

#[derive(Clone)]
pub struct UploadMetrics {
    pub uploads: prometheus::IntCounterVec,
    pub bytes: prometheus::IntCounter,
}

impl UploadMetrics {
    pub fn new(m: &shared::metrics::Metrics) -> Self {
        Self {
            uploads: m.register(
                prometheus::IntCounterVec::new(prometheus::Opts::new("uploads_total", "Uploads by outcome code"), &["outcome"]).unwrap(),
            ),
            bytes: m.register(prometheus::IntCounter::new("upload_bytes_total", "Bytes of completed uploads").unwrap()),
        }
    }
}

/// The video `caller` may see: its owner and admins always; anyone a public
/// or unlisted one (unlisted means "whoever has the link"). Anything else is
/// the same 404 as a missing video, so ids cannot be probed.
pub async fn visible_video(st: &AppState, caller: &Caller, id: Uuid) -> Result<Video, ApiError> {
    let video = st.videos.get(id).await?.ok_or(ApiError::VideoNotFound(id))?;
    if caller.may_see(video.owner_id, video.visibility) {
        Ok(video)
    } else {
        Err(ApiError::VideoNotFound(id))
    }
}

/// The video `caller` may change or delete: owner or admin, else 404. A
/// request without a key is 401 first.
pub async fn owned_video(st: &AppState, caller: &Caller, id: Uuid) -> Result<Video, ApiError> {
    let me = caller.require()?;
    let video = st.videos.get(id).await?.ok_or(ApiError::VideoNotFound(id))?;
    if me.may_act_on(video.owner_id) {
        Ok(video)
    } else {
        Err(ApiError::VideoNotFound(id))
    }
}

/// `uploads_limit` guards POST /api/v1/videos (creation) only.
pub fn router(state: AppState, uploads_limit: RateLimit) -> Router {
    Router::new()
        // The body limit is ours (UPLOAD_MAX_BYTES, enforced while streaming);
        // axum's 2 MB default for buffered extractors must not apply here.
        .route("/api/v1/videos", post(create::create_video).layer(DefaultBodyLimit::disable()).layer(uploads_limit).get(list::list_videos))
        .route("/api/v1/videos/{video_id}", get(get::get_video).delete(delete::delete_video).patch(update::update_video).layer(DefaultBodyLimit::max(16 << 10)))
        .route("/api/v1/videos/{video_id}/events", get(events::video_events))
        .with_state(state)
}
