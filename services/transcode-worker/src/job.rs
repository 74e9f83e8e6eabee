//! One transcode job, start to finish: claim → download → probe → encode →
//! measure → upload (master playlist last) → commit `ready` in one transaction.
//!
//! Failures are sorted into permanent (the input is bad: no retry, the video
//! is `failed` with a reason) and transient (infrastructure: retried).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use shared::cache::{Cache, Progress};
use shared::layout;
use shared::queue::TranscodeJob;
use shared::storage::Storage;
use shared::videos::{Rendition, Transcoded, Videos};

use crate::configuration::TranscodeSettings;
use crate::ffmpeg::{self, Encode, POSTER_FILE};
use crate::package::{self, RenditionOutput};
use crate::probe;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input can never be transcoded; `String` is shown to the creator.
    #[error("{0}")]
    Permanent(String),
    #[error(transparent)]
    Transient(anyhow::Error),
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Transient(e)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// Already ready, failed or deleted: a redelivery, acknowledged without work.
    Skipped,
}

/// What every job needs; cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub videos: Videos,
    pub storage: Storage,
    pub cache: Cache,
    pub settings: Arc<TranscodeSettings>,
    pub worker_id: String,
}

/// Objects uploaded to S3 at once per job.
const UPLOAD_CONCURRENCY: usize = 8;
/// Progress writes to Redis at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl JobContext {
    pub async fn process(&self, job: &TranscodeJob) -> Result<Outcome, JobError> {
        let Some(attempt_id) = self.videos.start_attempt(job, &self.worker_id).await? else {
            tracing::info!(video_id = %job.video_id, "video already finished or gone; acknowledging without work");
            return Ok(Outcome::Skipped);
        };
        let result = self.transcode(job).await;
        match &result {
            Ok(t) => self.videos.mark_ready(job.video_id, attempt_id, t).await?,
            Err(JobError::Permanent(reason)) => self.videos.mark_failed(job.video_id, attempt_id, reason).await?,
            Err(JobError::Transient(e)) => self.videos.attempt_failed(attempt_id, &format!("{e:#}")).await?,
        }
        if let Err(e) = self.cache.clear_progress(job.video_id).await {
            tracing::debug!(error = format!("{e:#}"), "could not clear progress");
        }
        result.map(|_| Outcome::Ready)
    }

    async fn transcode(&self, job: &TranscodeJob) -> Result<Transcoded, JobError> {
        let s = &self.settings;
        tokio::fs::create_dir_all(&s.work_dir).await.with_context(|| format!("creating {}", s.work_dir.display()))?;
        // Removed on drop, whatever happens below.
        let work = tempfile::Builder::new().prefix(&format!("job-{}-", job.video_id)).tempdir_in(&s.work_dir).context("work dir")?;
        let input = work.path().join("source");
        let out_dir = work.path().join("out");

        self.progress(job, "downloading", 0.0).await;
        self.storage.download_to_file(&job.source_key, &input).await?;

        self.progress(job, "probing", 0.0).await;
        let source = probe::run(&s.ffprobe, &input).await?;
        let rungs = s.ladder.plan(source.width, source.height);
        tracing::info!(video_id = %job.video_id, trace_id = shared::telemetry::current_trace_id(), w = source.width, h = source.height, fps = source.frame_rate,
            duration = source.duration, rungs = ?rungs.iter().map(|r| &r.name).collect::<Vec<_>>(), "transcoding");

        for r in &rungs {
            tokio::fs::create_dir_all(out_dir.join(&r.name)).await.context("rendition dir")?;
        }
        let args = ffmpeg::args(&Encode { input: &input, out_dir: &out_dir, rungs: &rungs, source: &source, preset: &s.preset });
        let (tx, mut rx) = tokio::sync::watch::channel(0.0f64);
        let reporter = {
            let (cache, id) = (self.cache.clone(), job.video_id);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let pct = *rx.borrow_and_update();
                    let _ = cache.set_progress(id, &Progress { stage: "transcoding".into(), percent: pct }).await;
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
            })
        };
        let started = Instant::now();
        let encoded = ffmpeg::run(&s.ffmpeg, &args, s.stall_timeout, |p| {
            let _ = tx.send((100.0 * p.out_seconds / source.duration).clamp(0.0, 100.0));
        })
        .await;
        drop(tx);
        let _ = reporter.await;
        encoded?;
        tracing::info!(video_id = %job.video_id, secs = started.elapsed().as_secs_f64(), "ffmpeg finished");

        let mut outputs = Vec::with_capacity(rungs.len());
        for r in &rungs {
            outputs.push(package::describe(&out_dir, r, source.has_audio).await?);
        }
        self.progress(job, "uploading", 100.0).await;
        self.upload(job, &outputs, &out_dir, source.frame_rate).await?;

        let top = &outputs[0];
        Ok(Transcoded {
            duration_seconds: top.duration,
            width: source.width as i32,
            height: source.height as i32,
            master_key: layout::master_playlist(job.video_id),
            renditions: outputs
                .iter()
                .map(|o| Rendition {
                    name: o.rung.name.clone(),
                    width: o.rung.width as i32,
                    height: o.rung.height as i32,
                    bandwidth: o.bandwidth as i64,
                    average_bandwidth: o.average_bandwidth as i64,
                    codecs: o.codecs.clone(),
                    frame_rate: source.frame_rate,
                    playlist_key: format!("{}{}/index.m3u8", layout::hls_prefix(job.video_id), o.rung.name),
                })
                .collect(),
        })
    }

    /// Uploads every rendition file and the poster, then the master playlist.
    /// The master goes last: until it exists the origin has nothing to serve,
    /// so a crash mid-upload never leaves a half-playable video.
    async fn upload(&self, job: &TranscodeJob, outputs: &[RenditionOutput], out_dir: &std::path::Path, fps: f64) -> Result<(), JobError> {
        let prefix = layout::hls_prefix(job.video_id);
        // Leftovers of an earlier, interrupted attempt must not mix with ours.
        self.storage.delete_prefix(&prefix).await?;
        let p = &prefix;
        let mut files: Vec<(String, std::path::PathBuf)> = outputs
            .iter()
            .flat_map(|o| o.files.iter().map(move |f| (format!("{p}{}/{f}", o.rung.name), o.dir.join(f))))
            .collect();
        files.push((format!("{prefix}{POSTER_FILE}"), out_dir.join(POSTER_FILE)));
        futures::stream::iter(files)
            .map(|(key, path)| async move {
                let ct = content_type(&key);
                self.storage.put_file(&key, &path, ct).await
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let master = package::master_playlist(outputs, fps);
        self.storage
            .put_bytes(&layout::master_playlist(job.video_id), master.into(), "application/vnd.apple.mpegurl")
            .await?;
        Ok(())
    }

    async fn progress(&self, job: &TranscodeJob, stage: &str, percent: f64) {
        if let Err(e) = self.cache.set_progress(job.video_id, &Progress { stage: stage.into(), percent }).await {
            tracing::debug!(error = format!("{e:#}"), "could not record progress");
        }
    }
}

pub fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("jpg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}
