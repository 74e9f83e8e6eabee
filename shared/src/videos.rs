//! The video catalogue: rows, state transitions, and the intake that both
//! upload services end on (store row → publish job with confirm → `queued`).
//!
//! ```text
//! uploaded ──publish confirmed──▶ queued ──worker──▶ processing ──▶ ready
//!     ▲  (republisher retries                            └──────▶ failed
//!     └── publishes that failed)
//! ```
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
    pub title: String,
    pub description: String,
    pub content_type: String,
    pub stored: Stored,
}

/// What a finished transcode stored.
#[derive(Debug, Clone)]
pub struct Transcoded {
    pub duration_seconds: f64,
    pub width: i32,
    pub height: i32,
    pub master_key: String,
    pub renditions: Vec<Rendition>,
}

#[derive(Clone)]
pub struct Videos {
    pool: PgPool,
}

const COLUMNS: &str = "id, title, description, status, source_key, source_size, source_sha256, content_type, \
    duration_seconds, width, height, master_key, error, created_at, updated_at";

const FAIL_VIDEO: &str = "UPDATE videos SET status = 'failed', error = $2, updated_at = now() WHERE id = $1 AND status <> 'ready'";

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
    pub async fn list(&self, before: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<Video>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM videos WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
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
            "INSERT INTO videos (id, title, description, status, source_key, source_size, source_sha256, content_type) \
             VALUES ($1, $2, $3, 'uploaded', $4, $5, $6, $7)",
        )
        .bind(v.id)
        .bind(&v.title)
        .bind(&v.description)
        .bind(&v.stored.key)
        .bind(v.stored.size as i64)
        .bind(&v.stored.sha256)
        .bind(&v.content_type)
        .execute(&self.pool)
        .await
        .context("inserting video row")?;
        Ok(())
    }

    pub async fn mark_queued(&self, id: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE videos SET status = 'queued', updated_at = now() WHERE id = $1 AND status = 'uploaded'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a video to `processing` and opens an attempt row. None when the
    /// video is gone, already `ready` or already `failed`: the job is then
    /// acknowledged without work (redeliveries are expected, not errors).
    pub async fn start_attempt(&self, job: &TranscodeJob, worker: &str) -> anyhow::Result<Option<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE videos SET status = 'processing', error = NULL, updated_at = now() \
             WHERE id = $1 AND status IN ('uploaded', 'queued', 'processing')",
        )
        .bind(job.video_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let attempt_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO transcode_attempts (id, video_id, job_id, attempt, worker, outcome) VALUES ($1, $2, $3, $4, $5, 'running')",
        )
        .bind(attempt_id)
        .bind(job.video_id)
        .bind(job.job_id)
        .bind(job.attempt as i32)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(attempt_id))
    }

    /// Commits a finished transcode: renditions, metadata and `ready` in one
    /// transaction, so readers see all of it or none.
    pub async fn mark_ready(&self, video_id: Uuid, attempt_id: Uuid, t: &Transcoded) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM renditions WHERE video_id = $1").bind(video_id).execute(&mut *tx).await?;
        for r in &t.renditions {
            sqlx::query(
                "INSERT INTO renditions (video_id, name, width, height, bandwidth, average_bandwidth, codecs, frame_rate, playlist_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(video_id)
            .bind(&r.name)
            .bind(r.width)
            .bind(r.height)
            .bind(r.bandwidth)
            .bind(r.average_bandwidth)
            .bind(&r.codecs)
            .bind(r.frame_rate)
            .bind(&r.playlist_key)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE videos SET status = 'ready', error = NULL, duration_seconds = $2, width = $3, height = $4, master_key = $5, \
             updated_at = now() WHERE id = $1",
        )
        .bind(video_id)
        .bind(t.duration_seconds)
        .bind(t.width)
        .bind(t.height)
        .bind(&t.master_key)
        .execute(&mut *tx)
        .await?;
        close_attempt(&mut tx, attempt_id, "succeeded", None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A permanent failure: the video is `failed` with a reason a person can read.
    pub async fn mark_failed(&self, video_id: Uuid, attempt_id: Uuid, reason: &str) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(FAIL_VIDEO)
            .bind(video_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        close_attempt(&mut tx, attempt_id, "failed", Some(reason)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Retries are exhausted: the video is `failed`, no attempt is open.
    pub async fn give_up(&self, video_id: Uuid, reason: &str) -> anyhow::Result<()> {
        sqlx::query(FAIL_VIDEO).bind(video_id).bind(reason).execute(&self.pool).await?;
        Ok(())
    }

    /// A transient failure: the attempt is closed, the video stays in flight
    /// for the redelivery to pick up.
    pub async fn attempt_failed(&self, attempt_id: Uuid, reason: &str) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        close_attempt(&mut tx, attempt_id, "failed", Some(reason)).await?;
        tx.commit().await?;
        Ok(())
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

async fn close_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    attempt_id: Uuid,
    outcome: &str,
    error: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE transcode_attempts SET outcome = $2, error = $3, finished_at = now() WHERE id = $1")
        .bind(attempt_id)
        .bind(outcome)
        .bind(error)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
    let enqueued = enqueue(videos, publisher, new.id, &new.stored.key).await;
    let video = videos.get(new.id).await?.context("video row vanished after insert")?;
    Ok(Registered { video, enqueued })
}

async fn enqueue(videos: &Videos, publisher: &Publisher, id: Uuid, source_key: &str) -> bool {
    let job = TranscodeJob::new(id, source_key.to_owned());
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
                    if enqueue(&videos, &publisher, v.id, &v.source_key).await {
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
