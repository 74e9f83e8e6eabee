//! Upload progress in Redis — bytes received and rate — for the
//! `GET /api/v1/uploads/{id}/events` stream. Any replica publishes, any
//! replica serves the stream. Progress is advisory: when Redis is down the
//! upload goes on and the stream falls back to the committed offset.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shared::cache::Cache;
use uuid::Uuid;

const KIND: &str = "tus-progress";
/// Outlives the upload's last activity long enough for a watcher to see the end.
const TTL_SECS: u64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadProgress {
    pub offset: u64,
    pub length: Option<u64>,
    /// Rate of the request now writing, bytes per second.
    pub bytes_per_second: u64,
    pub complete: bool,
    pub video: Option<String>,
}

/// The committed state, as a watcher sees it (no rate: nothing is in flight).
impl From<&crate::store::Upload> for UploadProgress {
    fn from(up: &crate::store::Upload) -> Self {
        UploadProgress {
            offset: up.offset,
            length: up.length,
            bytes_per_second: 0,
            complete: up.video_id.is_some() || (up.completed && up.is_final()),
            video: up.video_id.map(crate::finish::video_path),
        }
    }
}

#[derive(Clone)]
pub struct ProgressBoard {
    cache: Cache,
}

impl ProgressBoard {
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }

    pub async fn publish(&self, id: Uuid, p: &UploadProgress) {
        if let Err(e) = self.cache.put_json(KIND, id, p, TTL_SECS).await {
            tracing::debug!(upload_id = %id, error = format!("{e:#}"), "progress not published");
        }
    }

    pub async fn read(&self, id: Uuid) -> Option<UploadProgress> {
        self.cache.get_json(KIND, id).await.ok().flatten()
    }

    /// A callback for the appender: publishes from a spawned task so the
    /// byte path never waits on Redis.
    pub fn reporter(&self, id: Uuid, length: Option<u64>) -> Arc<dyn Fn(u64, u64) + Send + Sync> {
        let board = self.clone();
        let started = Instant::now();
        Arc::new(move |offset, received| {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let p = UploadProgress {
                offset,
                length,
                bytes_per_second: (received as f64 / secs) as u64,
                complete: false,
                video: None,
            };
            let board = board.clone();
            tokio::spawn(async move { board.publish(id, &p).await });
        })
    }
}
