//! One job's life: claim → the content key, if the video is not public →
//! produce the outputs under the attempt's own prefix → commit (the master playlist is already stored, the row flips to
//! `ready` in one transaction) → remove every other attempt's leftovers.
//!
//! While it runs, the video row is polled: a deletion (or another attempt
//! committing) cancels the job, which kills ffmpeg and removes what this
//! attempt stored. Failures are sorted into permanent (the input is bad: no
//! retry, the video is `failed` with a reason) and transient (retried).

use std::sync::Arc;
use std::time::Duration;

use shared::cache::Cache;
use shared::layout;
use shared::playback::ContentKeys;
use shared::queue::TranscodeJob;
use shared::storage::Storage;
use shared::transcodes::{Claim, Commit, Transcodes};
use shared::videos::Videos;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::configuration::TranscodeSettings;
use crate::confine::Confinement;
use crate::encrypt::ContentKey;
use crate::rejection::Rejection;

/// Why an attempt failed transiently; the `reason` label of the failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Storage,
    Database,
    /// ffmpeg died by a signal that was not ours.
    FfmpegKilled,
    /// ffmpeg stopped making progress and we killed it.
    Stalled,
    /// Local trouble: disk, spawning processes, unexpected output.
    Internal,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Storage => "storage",
            Failure::Database => "database",
            Failure::FfmpegKilled => "ffmpeg_killed",
            Failure::Stalled => "stalled",
            Failure::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input can never be transcoded; the reason is shown to the creator.
    #[error("{0}")]
    Permanent(Rejection),
    #[error("{1:#}")]
    Transient(Failure, anyhow::Error),
}

impl JobError {
    pub fn storage(e: anyhow::Error) -> Self {
        JobError::Transient(Failure::Storage, e)
    }

    pub fn database(e: anyhow::Error) -> Self {
        JobError::Transient(Failure::Database, e)
    }

    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Permanent(_) => "invalid_input",
            JobError::Transient(kind, _) => kind.label(),
        }
    }
}

impl From<Rejection> for JobError {
    fn from(r: Rejection) -> Self {
        JobError::Permanent(r)
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Transient(Failure::Internal, e)
    }
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Committed; the media seconds transcoded.
    Ready { media_seconds: f64 },
    /// Already ready, failed or deleted: a redelivery, acknowledged without work.
    Skipped,
    /// The video was deleted (or finished elsewhere) while this attempt ran.
    Cancelled,
    /// This attempt finished, but another had committed first.
    Superseded,
}

/// What every job needs; cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub transcodes: Transcodes,
    pub videos: Videos,
    pub keys: ContentKeys,
    pub storage: Storage,
    pub cache: Cache,
    pub settings: Arc<TranscodeSettings>,
    /// Resolved once at start (it tries a network namespace).
    pub confinement: Arc<Confinement>,
    pub worker_id: String,
}

/// How often a running job checks that its video still wants it.
const WATCH_EVERY: Duration = Duration::from_secs(1);

impl JobContext {
    pub async fn process(&self, job: &TranscodeJob) -> Result<Outcome, JobError> {
        let video = job.video_id;
        let claim = self.transcodes.start(job, &self.worker_id, |a| layout::attempt_prefix(video, a)).await.map_err(JobError::database)?;
        let attempt = match claim {
            Claim::Started(id) => id,
            Claim::Finished => {
                tracing::info!(%video, "video already finished; acknowledging without work");
                return Ok(Outcome::Skipped);
            }
            Claim::Duplicate => {
                tracing::info!(%video, "this job and attempt were already settled; acknowledging the copy");
                return Ok(Outcome::Skipped);
            }
            Claim::CrashLoop(n) => {
                return Err(Rejection::CrashLoop { workers: n }.into());
            }
            Claim::Gone => {
                // An attempt cut off by the deletion may have stored objects after it.
                self.remove(&layout::hls_prefix(video), None).await;
                tracing::info!(%video, "video deleted; acknowledging without work");
                return Ok(Outcome::Skipped);
            }
        };
        let prefix = layout::attempt_prefix(video, attempt);
        let cancel = CancellationToken::new();
        let watcher = tokio::spawn(watch(self.transcodes.clone(), video, cancel.clone()));
        let produced = tokio::select! {
            r = async { crate::outputs::produce(self, job, &prefix, self.content_key(video).await?.as_ref()).await } => Some(r),
            _ = cancel.cancelled() => None,
        };
        watcher.abort();
        if let Err(e) = self.cache.clear_progress(video).await {
            tracing::debug!(error = format!("{e:#}"), "could not clear progress");
        }
        match produced {
            None => {
                tracing::info!(%video, "video deleted or finished elsewhere; attempt cancelled");
                self.remove(&prefix, None).await;
                self.transcodes.close_attempt(attempt, "cancelled", "the video was deleted or finished by another attempt").await.map_err(JobError::database)?;
                Ok(Outcome::Cancelled)
            }
            Some(Ok(t)) => match self.transcodes.commit(video, attempt, &t).await {
                Ok(Commit::Committed) => {
                    self.remove(&layout::hls_prefix(video), Some(&prefix)).await;
                    Ok(Outcome::Ready { media_seconds: t.duration_seconds })
                }
                Ok(Commit::Superseded) => {
                    self.remove(&prefix, None).await;
                    Ok(Outcome::Superseded)
                }
                // Whether the commit landed is unknown, so our objects stay: the
                // retry either finds the video ready, or commits and removes them.
                Err(e) => Err(JobError::database(e)),
            },
            Some(Err(e)) => {
                // The video itself is marked failed by the settler, only once the
                // job is safely in the dead-letter queue.
                self.remove(&prefix, None).await;
                if let Err(db) = self.transcodes.close_attempt(attempt, "failed", &format!("{e}")).await {
                    tracing::error!(error = format!("{db:#}"), "could not record the failed attempt");
                }
                Err(e)
            }
        }
    }

    /// The key to encrypt with, read after the claim: None for a public
    /// video. Visibility changed later does not re-encode (the row's
    /// `encrypted` says what was done).
    async fn content_key(&self, video: Uuid) -> Result<Option<ContentKey>, JobError> {
        let Some(row) = self.videos.get(video).await.map_err(JobError::database)? else {
            // Deleted since the claim: the watcher cancels this attempt within a second.
            return std::future::pending().await;
        };
        if !row.visibility.is_protected() {
            return Ok(None);
        }
        Ok(Some(self.keys.get_or_create(video).await.map_err(JobError::database)?))
    }

    /// Best effort: a leftover costs storage, not correctness, and the next
    /// commit of this video removes it.
    async fn remove(&self, prefix: &str, keep: Option<&str>) {
        match self.storage.delete_prefix_except(prefix, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(prefix, keep, objects = n, "removed leftover objects"),
            Err(e) => tracing::warn!(prefix, error = format!("{e:#}"), "could not remove leftover objects"),
        }
    }
}

/// Cancels when the video is no longer `processing` (deleted, or committed
/// or failed by another attempt). A database hiccup is not a cancellation.
async fn watch(transcodes: Transcodes, video: Uuid, cancel: CancellationToken) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        match transcodes.status(video).await {
            Ok(Some(s)) if s == "processing" => {}
            Ok(_) => return cancel.cancel(),
            Err(e) => tracing::debug!(error = format!("{e:#}"), "could not check the video's status"),
        }
    }
}
