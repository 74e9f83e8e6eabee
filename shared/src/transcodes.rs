//! The transitions a transcode makes on the catalogue, each one transaction.
//!
//! Every attempt gets its own row and its own S3 prefix. Several attempts at
//! one video can overlap (a worker presumed dead may still be running), so
//! the commit is the only arbiter: it locks the video row and flips it to
//! `ready` only if it is still `processing`. The loser learns it lost and
//! removes its own objects; the winner removes everyone else's.

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use crate::queue::TranscodeJob;
use crate::videos::Rendition;

/// What a finished transcode stored.
#[derive(Debug, Clone)]
pub struct Transcoded {
    pub duration_seconds: f64,
    pub width: i32,
    pub height: i32,
    /// `hls/{video}/{attempt}/master.m3u8`: the origin serves the video from its folder.
    pub master_key: String,
    pub renditions: Vec<Rendition>,
    /// Its segments are HLS AES-128 under the video's content key (`videos.encrypted`).
    pub encrypted: bool,
}

/// The answer to "may this job run?".
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Yes: the attempt's id.
    Started(Uuid),
    /// The video is already `ready` or `failed`: a redelivery.
    Finished,
    /// The video is being deleted or is gone.
    Gone,
    /// This very message (job and attempt) was already settled: a copy left
    /// behind by an ack that did not reach the broker.
    Duplicate,
    /// This many workers died running this job and attempt: it is poison.
    CrashLoop(i64),
}

/// Workers that may die on one job and attempt before it is dead-lettered.
pub const MAX_CRASHES: i64 = 3;

#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// Someone else committed first, or the video failed or went away.
    Superseded,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Revival {
    /// The video is back to `uploaded`, ready for its job to be republished.
    Revived,
    /// There is no such video any more.
    Gone,
    /// It is `ready`, or being transcoded (its status is given): nothing to revive.
    NotFailed(String),
}

#[derive(Clone)]
pub struct Transcodes {
    pool: PgPool,
}

impl Transcodes {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Moves the video to `processing` and opens an attempt writing under `prefix(attempt_id)`.
    pub async fn start(&self, job: &TranscodeJob, worker: &str, prefix: impl Fn(Uuid) -> String) -> anyhow::Result<Claim> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM videos WHERE id = $1 FOR UPDATE")
            .bind(job.video_id)
            .fetch_optional(&mut *tx)
            .await?;
        match status.as_deref() {
            None | Some("deleting") => return Ok(Claim::Gone),
            Some("ready" | "failed") => return Ok(Claim::Finished),
            _ => {}
        }
        let (settled, died): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE outcome NOT IN ('running', 'abandoned')), count(*) FILTER (WHERE outcome IN ('running', 'abandoned')) \
             FROM transcode_attempts WHERE job_id = $1 AND attempt = $2",
        )
        .bind(job.job_id)
        .bind(job.attempt as i32)
        .fetch_one(&mut *tx)
        .await?;
        if settled > 0 {
            return Ok(Claim::Duplicate);
        }
        if died >= MAX_CRASHES {
            return Ok(Claim::CrashLoop(died));
        }
        sqlx::query("UPDATE videos SET status = 'processing', error = NULL, updated_at = now() WHERE id = $1")
            .bind(job.video_id)
            .execute(&mut *tx)
            .await?;
        let attempt_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO transcode_attempts (id, video_id, job_id, attempt, worker, outcome, prefix) VALUES ($1, $2, $3, $4, $5, 'running', $6)",
        )
        .bind(attempt_id)
        .bind(job.video_id)
        .bind(job.job_id)
        .bind(job.attempt as i32)
        .bind(worker)
        .bind(prefix(attempt_id))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claim::Started(attempt_id))
    }

    /// The video's status, None when the row is gone. Running jobs poll this
    /// to notice a deletion.
    pub async fn status(&self, video_id: Uuid) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT status FROM videos WHERE id = $1").bind(video_id).fetch_optional(&self.pool).await?)
    }

    /// Commits a finished transcode whose objects (master last) are stored:
    /// renditions, metadata and `ready` in one transaction, so readers see
    /// all of it or none. Attempts still `running` were left by dead
    /// workers and are closed as `abandoned`.
    pub async fn commit(&self, video_id: Uuid, attempt_id: Uuid, t: &Transcoded) -> anyhow::Result<Commit> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM videos WHERE id = $1 FOR UPDATE")
            .bind(video_id)
            .fetch_optional(&mut *tx)
            .await?;
        if status.as_deref() != Some("processing") {
            close(&mut *tx, attempt_id, "superseded", status.as_deref().map(|s| format!("video was {s} at commit")).as_deref()).await?;
            tx.commit().await?;
            return Ok(Commit::Superseded);
        }
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
            .await
            .context("inserting a rendition")?;
        }
        sqlx::query(
            "UPDATE videos SET status = 'ready', error = NULL, duration_seconds = $2, width = $3, height = $4, master_key = $5, \
             encrypted = $6, updated_at = now() WHERE id = $1",
        )
        .bind(video_id)
        .bind(t.duration_seconds)
        .bind(t.width)
        .bind(t.height)
        .bind(&t.master_key)
        .bind(t.encrypted)
        .execute(&mut *tx)
        .await?;
        close(&mut *tx, attempt_id, "succeeded", None).await?;
        sqlx::query(
            "UPDATE transcode_attempts SET outcome = 'abandoned', finished_at = now(), error = 'its worker stopped; another attempt finished the job' \
             WHERE video_id = $1 AND outcome = 'running'",
        )
        .bind(video_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Commit::Committed)
    }

    /// Closes an attempt without touching the video: a transient failure
    /// (the retry will pick the video up) or a cancellation.
    pub async fn close_attempt(&self, attempt_id: Uuid, outcome: &str, reason: &str) -> anyhow::Result<()> {
        close(&self.pool, attempt_id, outcome, Some(reason)).await
    }

    /// The job is dead (invalid input, or retries exhausted): the video is
    /// `failed` with a reason a person can read.
    pub async fn give_up(&self, video_id: Uuid, reason: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE videos SET status = 'failed', error = $2, updated_at = now() WHERE id = $1 AND status IN ('uploaded', 'queued', 'processing')")
            .bind(video_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Before a dead job is republished: the video goes back to `uploaded`,
    /// the state the republisher also watches, so the job cannot be lost
    /// between this and the publish. Revivable: `failed`, and a video left
    /// in flight with no attempt running (its job died while the catalogue
    /// was unreachable, so nobody could mark it failed).
    pub async fn revive(&self, video_id: Uuid) -> anyhow::Result<Revival> {
        let revived = sqlx::query(
            "UPDATE videos SET status = 'uploaded', error = NULL, updated_at = now() WHERE id = $1 AND (status = 'failed' \
             OR (status IN ('uploaded', 'queued', 'processing') \
                 AND NOT EXISTS (SELECT 1 FROM transcode_attempts WHERE video_id = $1 AND outcome = 'running')))",
        )
            .bind(video_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if revived == 1 {
            return Ok(Revival::Revived);
        }
        Ok(match self.status(video_id).await? {
            None => Revival::Gone,
            Some(s) if s == "deleting" => Revival::Gone,
            Some(s) => Revival::NotFailed(s),
        })
    }
}

async fn close(db: impl sqlx::PgExecutor<'_>, attempt_id: Uuid, outcome: &str, error: Option<&str>) -> anyhow::Result<()> {
    sqlx::query("UPDATE transcode_attempts SET outcome = $2, error = $3, finished_at = now() WHERE id = $1")
        .bind(attempt_id)
        .bind(outcome)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}
