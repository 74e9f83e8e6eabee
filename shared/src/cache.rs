//! Redis: short-lived shared state — transcode progress, and the connection
//! that [`crate::sessions`] and the edges' purge channel use. Nothing here is
//! the source of truth; losing Redis loses progress bars, never videos.

use anyhow::Context;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::configuration::{Env, Secret};

/// How long a progress record outlives its last update.
const PROGRESS_TTL_SECS: u64 = 3600;
/// Key kind of transcode progress records.
const PROGRESS: &str = "progress";

#[derive(Debug, Clone, Default)]
pub struct RedisSettings {
    pub url: Secret,
    pub prefix: String,
}

impl RedisSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            url: env.required("REDIS_URL", "Redis URL, e.g. redis://127.0.0.1:6379"),
            prefix: env.optional("REDIS_PREFIX", "video", "prefix of every Redis key"),
        }
    }

    pub fn cache(&self) -> anyhow::Result<Cache> {
        let client = redis::Client::open(self.url.expose()).context("REDIS_URL is not a valid Redis URL")?;
        Ok(Cache { client, conn: std::sync::Arc::new(OnceCell::new()), prefix: self.prefix.clone() })
    }
}

/// A lazily connected, self-reconnecting Redis handle.
#[derive(Clone)]
pub struct Cache {
    client: redis::Client,
    conn: std::sync::Arc<OnceCell<ConnectionManager>>,
    prefix: String,
}

/// Where a transcode job is, for the status API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub stage: String,
    pub percent: f64,
    /// Frames encoded per second, while encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Media seconds encoded per wall-clock second (2.0 = twice real time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl Progress {
    /// A stage without encoder figures (downloading, probing, uploading).
    pub fn stage(stage: &str, percent: f64) -> Self {
        Self { stage: stage.into(), percent, fps: None, speed: None }
    }
}

impl Cache {
    /// The shared connection, for modules that keep their own keys (sessions).
    pub async fn connection(&self) -> anyhow::Result<ConnectionManager> {
        self.conn().await
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A connection of its own for SUBSCRIBE, which a shared one cannot carry.
    pub async fn pubsub(&self) -> anyhow::Result<redis::aio::PubSub> {
        self.client.get_async_pubsub().await.context("connecting to Redis for pub/sub")
    }

    async fn conn(&self) -> anyhow::Result<ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async { ConnectionManager::new(self.client.clone()).await })
            .await
            .context("connecting to Redis")?;
        Ok(conn.clone())
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await.context("PING")?;
        Ok(())
    }

    fn key(&self, kind: &str, id: Uuid) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// A short-lived JSON record under `{prefix}:{kind}:{id}`.
    pub async fn put_json<T: Serialize>(&self, kind: &str, id: Uuid, value: &T, ttl_secs: u64) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        let _: () = c.set_ex(self.key(kind, id), serde_json::to_string(value)?, ttl_secs).await?;
        Ok(())
    }

    /// The record, or None when absent or unreadable (it is advisory state).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, kind: &str, id: Uuid) -> anyhow::Result<Option<T>> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get(self.key(kind, id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    pub async fn set_progress(&self, video_id: Uuid, progress: &Progress) -> anyhow::Result<()> {
        self.put_json(PROGRESS, video_id, progress, PROGRESS_TTL_SECS).await
    }

    pub async fn progress(&self, video_id: Uuid) -> anyhow::Result<Option<Progress>> {
        self.get_json(PROGRESS, video_id).await
    }

    pub async fn clear_progress(&self, video_id: Uuid) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        let _: () = c.del(self.key(PROGRESS, video_id)).await?;
        Ok(())
    }
}
