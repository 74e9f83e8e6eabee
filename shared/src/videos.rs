//! The video catalogue: rows, state transitions, and the intake that both
//! upload services end on (store row → publish job with confirm → `queued`).
//!
//! ```text
//! uploaded ──publish confirmed──▶ queued ──worker──▶ processing ──▶ ready
//!     ▲  (republisher retries                            └──────▶ failed
//!     └── publishes that failed; a dead job requeued)    any ──DELETE──▶ deleting ──▶ (row gone)
//! ```
//!
//! The transitions a transcode makes are in [`crate::transcodes`].
//!
//! A video row is written only after its source object is complete in S3, so
//! no row ever claims bytes that are not there.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::queue::{Publisher, TranscodeJob};
use crate::layout;
use crate::storage::Stored;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Video {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub source_key: String,
    pub source_size: i64,
    pub source_sha256: String,
    pub content_type: String,
    pub duration_seconds: Option<f64>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub master_key: Option<String>,
    pub error: Option<String>,
    /// The principal that uploaded it; None for rows older than owners (admins only).
    pub owner_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub visibility: Visibility,
    /// Whether its renditions were encrypted when they were encoded (HLS AES-128).
    pub encrypted: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, PartialEq)]
pub struct Rendition {
    pub name: String,
    pub width: i32,
    pub height: i32,
    pub bandwidth: i64,
    pub average_bandwidth: i64,
    pub codecs: String,
    pub frame_rate: f64,
    pub playlist_key: String,
}

/// A completed source object waiting for its row.
#[derive(Debug, Clone)]
pub struct NewVideo {
    pub id: Uuid,
    /// None only for a tus upload begun before owners existed (admins' then).
    pub owner_id: Option<Uuid>,
    pub visibility: Visibility,
    pub title: String,
    pub description: String,
    pub content_type: String,
    pub stored: Stored,
}

#[derive(Clone)]
pub struct Videos {
    pool: PgPool,
}

const COLUMNS: &str = "id, title, description, status, source_key, source_size, source_sha256, content_type, \
    duration_seconds, width, height, master_key, error, owner_id, visibility, encrypted, created_at, updated_at";

/// Who may see a video without being its owner or an admin.
///
/// - `public`: listed, and played by anyone with no token (cacheable as is).
/// - `unlisted`: not listed; played by anyone holding a signed playback URL.
/// - `private`: only its owner and admins get a playback URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Unlisted,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Private => "private",
        }
    }

    /// Played only with a signed URL, and encrypted when encoded.
    pub fn is_protected(self) -> bool {
        self != Visibility::Public
    }
}

impl std::str::FromStr for Visibility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Visibility::Public),
            "unlisted" => Ok(Visibility::Unlisted),
            "private" => Ok(Visibility::Private),
            other => Err(format!("visibility {other:?} is not one of public, unlisted, private")),
        }
    }
}

impl TryFrom<String> for Visibility {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Which videos a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListScope {
    /// Admins: every video.
    All,
    /// A creator: their own.
    Owner(Uuid),
    /// Anonymous callers: public videos only.
    Public,
}

impl Videos {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Video>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM videos WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?)
    }

    /// Newest first. `before` is the last id of the previous page: ids are
    /// UUIDv7, so id order is creation order and the cursor is stable under inserts.
    pub async fn list(&self, scope: ListScope, before: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<Video>> {
        let (owner, public_only) = match scope {
            ListScope::All => (None, false),
            ListScope::Owner(id) => (Some(id), false),
            ListScope::Public => (None, true),
        };
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM videos WHERE ($1::uuid IS NULL OR id < $1) \
             AND ($3::uuid IS NULL OR owner_id = $3) AND (NOT $4 OR visibility = 'public') \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .bind(owner)
        .bind(public_only)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn renditions(&self, id: Uuid) -> anyhow::Result<Vec<Rendition>> {
        Ok(sqlx::query_as(
            "SELECT name, width, height, bandwidth, average_bandwidth, codecs, frame_rate, playlist_key \
             FROM renditions WHERE video_id = $1 ORDER BY height DESC",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn insert_uploaded(&self, v: &NewVideo) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO videos (id, title, description, status, source_key, source_size, source_sha256, content_type, owner_id, visibility) \
             VALUES ($1, $2, $3, 'uploaded', $4, $5, $6, $7, $8, $9)",
        )
        .bind(v.id)
        .bind(&v.title)
        .bind(&v.description)
        .bind(&v.stored.key)
        .bind(v.stored.size as i64)
        .bind(&v.stored.sha256)
        .bind(&v.content_type)
        .bind(v.owner_id)
        .bind(v.visibility.as_str())
        .execute(&self.pool)
        .await
        .context("inserting video row")?;
        Ok(())
    }

    /// Changes who may see the video; returns the row, or None if it is gone.
    pub async fn set_visibility(&self, id: Uuid, visibility: Visibility) -> anyhow::Result<Option<Video>> {
        Ok(sqlx::query_as(&format!(
            "UPDATE videos SET visibility = $2, updated_at = now() WHERE id = $1 AND status <> 'deleting' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(visibility.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn mark_queued(&self, id: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE videos SET status = 'queued', updated_at = now() WHERE id = $1 AND status = 'uploaded'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// First phase of a deletion: the row turns `deleting`, which cancels a
    /// running transcode and hides the video, and is returned so its objects
    /// can be removed. None when there is no such video.
    pub async fn begin_delete(&self, id: Uuid) -> anyhow::Result<Option<Video>> {
        Ok(sqlx::query_as(&format!(
            "UPDATE videos SET status = 'deleting', updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Second phase, once the objects are gone: the row (and, by cascade,
    /// its renditions and attempts) goes too.
    pub async fn finish_delete(&self, id: Uuid) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM videos WHERE id = $1 AND status = 'deleting'").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Every object of a video: its source and everything any attempt wrote.
    pub async fn delete_objects(storage: &crate::storage::Storage, v: &Video) -> anyhow::Result<()> {
        storage.delete_prefix(&layout::hls_prefix(v.id)).await?;
        storage.delete(&v.source_key).await
    }

    /// Claims one video stuck in `uploaded` (its publish failed) for
    /// republishing. SKIP LOCKED plus the bumped timestamp keep two replicas
    /// from republishing the same row in the same round.
    pub async fn claim_stranded(&self, older_than: Duration) -> anyhow::Result<Option<Video>> {
        Ok(sqlx::query_as(&format!(
            "UPDATE videos SET updated_at = now() WHERE id = ( \
                SELECT id FROM videos WHERE status = 'uploaded' AND updated_at < now() - make_interval(secs => $1) \
                ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}"
        ))
        .bind(older_than.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// The outcome of handing a stored upload to the pipeline.
#[derive(Debug)]
pub struct Registered {
    pub video: Video,
    /// False when the broker could not confirm; the video stays `uploaded`
    /// and the republisher enqueues it later. The upload itself is safe.
    pub enqueued: bool,
}

/// Registers a stored upload and enqueues its transcode. Shared by every
/// upload path so a video is born the same way whatever protocol brought it.
pub async fn register_and_enqueue(videos: &Videos, publisher: &Publisher, new: NewVideo) -> anyhow::Result<Registered> {
    videos.insert_uploaded(&new).await?;
    let enqueued = enqueue(videos, publisher, new.id, &new.stored.key, new.stored.size).await;
    let video = videos.get(new.id).await?.context("video row vanished after insert")?;
    Ok(Registered { video, enqueued })
}

async fn enqueue(videos: &Videos, publisher: &Publisher, id: Uuid, source_key: &str, source_size: u64) -> bool {
    let job = TranscodeJob::new(id, source_key.to_owned(), source_size);
    match publisher.publish(&job).await {
        Ok(()) => match videos.mark_queued(id).await {
            Ok(()) => true,
            Err(e) => {
                // The job is on the queue; the worker moves the row on from `uploaded` itself.
                tracing::warn!(video_id = %id, error = format!("{e:#}"), "job published but row not marked queued");
                true
            }
        },
        Err(e) => {
            tracing::error!(video_id = %id, error = format!("{e:#}"), "could not publish transcode job; republisher will retry");
            false
        }
    }
}

/// Re-publishes videos whose first publish failed. Runs for the life of an
/// upload service; each round handles at most `batch` rows so one round
/// cannot monopolise the pool.
pub async fn republish_stranded(videos: Videos, publisher: std::sync::Arc<Publisher>, every: Duration, batch: usize) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for _ in 0..batch {
            match videos.claim_stranded(every).await {
                Ok(Some(v)) => {
                    if enqueue(&videos, &publisher, v.id, &v.source_key, v.source_size as u64).await {
                        tracing::info!(video_id = %v.id, "republished stranded upload");
                    } else {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "republisher could not read the catalogue");
                    break;
                }
            }
        }
    }
}
