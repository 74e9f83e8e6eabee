//! The router: one handler per operation.

mod create;
mod delete;
mod events;
mod get;
mod list;
mod view;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use shared::cache::Cache;
use shared::queue::Publisher;
use shared::ratelimit::RateLimit;
use shared::storage::Storage;
use shared::videos::Videos;

use crate::configuration::UploadSettings;

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

/// `uploads_limit` guards POST /api/v1/videos (creation) only.
pub fn router(state: AppState, uploads_limit: RateLimit) -> Router {
    Router::new()
        // The body limit is ours (UPLOAD_MAX_BYTES, enforced while streaming);
        // axum's 2 MB default for buffered extractors must not apply here.
        .route("/api/v1/videos", post(create::create_video).layer(DefaultBodyLimit::disable()).layer(uploads_limit).get(list::list_videos))
        .route("/api/v1/videos/{video_id}", get(get::get_video).delete(delete::delete_video))
        .route("/api/v1/videos/{video_id}/events", get(events::video_events))
        .with_state(state)
}
