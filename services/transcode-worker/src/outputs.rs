//! Everything one attempt stores, from one download and one ffmpeg pass:
//! the HLS ladder and audio rendition, I-frame playlists, the DASH manifest,
//! the poster and the thumbnail sprites with their WebVTT track. All of it
//! goes under the attempt's prefix, the master playlist last.
//!
//! With a content key (the video is not public), the renditions are
//! encrypted (see [`crate::encrypt`]) before they are measured, and the
//! I-frame playlists and the DASH manifest are left out.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use shared::cache::Progress;
use shared::layout;
use shared::queue::TranscodeJob;
use shared::transcodes::Transcoded;
use shared::videos::Rendition;

use crate::encrypt::{self, ContentKey};
use crate::ffmpeg::{self, Encode, Watchdog, POSTER_FILE};
use crate::job::{JobContext, JobError};
use crate::package::{self, Track};
use crate::rejection::Rejection;
use crate::thumbnails::{Sprites, VTT_FILE};
use crate::{dash, probe};

/// Objects uploaded to S3 at once per job.
const UPLOAD_CONCURRENCY: usize = 8;
/// Progress writes to Redis at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub async fn produce(ctx: &JobContext, job: &TranscodeJob, prefix: &str, key: Option<&ContentKey>) -> Result<Transcoded, JobError> {
    let s = &ctx.settings;
    tokio::fs::create_dir_all(&s.work_dir).await.with_context(|| format!("creating {}", s.work_dir.display()))?;
    // Removed on drop, whatever happens below (a cancellation included).
    let work = tempfile::Builder::new().prefix(&crate::workdir::job_prefix(job.video_id)).tempdir_in(&s.work_dir).context("work dir")?;
    let input = work.path().join("source");
    let out_dir = work.path().join("out");

    progress(ctx, job, Progress::stage("downloading", 0.0)).await;
    ctx.storage.download_to_file(&job.source_key, &input).await.map_err(JobError::storage)?;

    progress(ctx, job, Progress::stage("probing", 0.0)).await;
    let probed = probe::run(&s.ffprobe, &input, &ctx.confinement, s.limits.probe_timeout).await?;
    let mut source = probed.source;
    s.limits.check(&source)?;
    // Checked at the source's rate (the decode cost); encoded at the clamped one.
    let clamp_fps = s.limits.output_fps(&source);
    if let Some(r) = clamp_fps {
        tracing::info!(video_id = %job.video_id, source_fps = source.frame_rate, output_fps = r, "clamping the frame rate");
        source.frame_rate = r;
    }
    let rungs = s.ladder.plan(source.width, source.height);
    let sprites = Sprites::plan(&source);
    tracing::info!(video_id = %job.video_id, trace_id = shared::telemetry::current_trace_id(), w = source.width, h = source.height, fps = source.frame_rate,
        duration = source.duration, rungs = ?rungs.iter().map(|r| &r.name).collect::<Vec<_>>(), "transcoding");

    for r in &rungs {
        tokio::fs::create_dir_all(out_dir.join(&r.name)).await.context("rendition dir")?;
    }
    tokio::fs::create_dir_all(out_dir.join(ffmpeg::AUDIO_NAME)).await.context("audio dir")?;
    let args = ffmpeg::args(&Encode {
        input: &input,
        demuxer: &probed.demuxer,
        confinement: &ctx.confinement,
        clamp_fps,
        out_dir: &out_dir,
        rungs: &rungs,
        source: &source,
        preset: &s.preset,
        sprites: &sprites,
    });
    let (tx, mut rx) = tokio::sync::watch::channel(Progress::stage("transcoding", 0.0));
    let reporter = {
        let (cache, id) = (ctx.cache.clone(), job.video_id);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = rx.borrow_and_update().clone();
                let _ = cache.set_progress(id, &p).await;
                tokio::time::sleep(PROGRESS_EVERY).await;
            }
        })
    };
    let started = Instant::now();
    let watchdog = Watchdog { stall: s.stall_timeout, deadline: s.limits.encode_deadline(source.duration) };
    let encoded = ffmpeg::run(&s.ffmpeg, &args, &ctx.confinement, watchdog, |p| {
        let _ = tx.send(Progress {
            stage: "transcoding".into(),
            percent: (100.0 * p.out_seconds / source.duration).clamp(0.0, 100.0),
            fps: Some(p.fps),
            speed: Some(p.speed),
        });
    })
    .await;
    drop(tx);
    // Not joined: it may be in its 1 s pause, and every job would wait it out.
    reporter.abort();
    encoded?;
    tracing::info!(video_id = %job.video_id, secs = started.elapsed().as_secs_f64(), "ffmpeg finished");
    let tiling = (sprites.clone(), out_dir.clone());
    tokio::task::spawn_blocking(move || tiling.0.write_sheets(&tiling.1)).await.context("tiling the thumbnails")??;

    if let Some(key) = key.copied() {
        let dirs: Vec<_> = rungs.iter().map(|r| r.name.as_str()).chain(source.has_audio.then_some(ffmpeg::AUDIO_NAME)).map(|n| out_dir.join(n)).collect();
        tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|d| encrypt::rendition(d, &key))).await.context("encrypting the renditions")??;
    }
    let iframes = key.is_none();
    let mut video = Vec::with_capacity(rungs.len());
    for r in &rungs {
        video.push(package::describe(&out_dir, Track::Video(r.clone()), iframes).await?);
    }
    let audio = if source.has_audio { Some(package::describe(&out_dir, Track::Audio, false).await?) } else { None };
    let top = &video[0];
    // Encrypted videos are HLS-only (see crate::encrypt).
    let with_dash = key.is_none();
    if with_dash {
        tokio::fs::write(out_dir.join(dash::MANIFEST), dash::manifest(&video, audio.as_ref(), source.frame_rate)?).await.context("writing the MPD")?;
    }
    tokio::fs::write(out_dir.join(VTT_FILE), sprites.vtt(top.duration)).await.context("writing the thumbnails track")?;

    progress(ctx, job, Progress::stage("uploading", 100.0)).await;
    // Renditions were read back from their playlists and the manifests were
    // written here; only the images can be missing, when frames end early.
    let images: Vec<String> = std::iter::once(POSTER_FILE.to_owned()).chain((0..sprites.sheets()).map(Sprites::sheet_name)).collect();
    if let Some(missing) = images.iter().find(|f| !out_dir.join(f).exists()) {
        // ffmpeg succeeded but wrote less than the probe promised: the frames end early.
        tracing::warn!(video_id = %job.video_id, missing, "no such image was made");
        return Err(Rejection::FramesEndEarly { duration: source.duration }.into());
    }
    let mut files: Vec<String> = video.iter().chain(audio.as_ref()).flat_map(|o| o.files.iter().map(move |f| format!("{}/{f}", o.name))).collect();
    files.extend(with_dash.then(|| dash::MANIFEST.to_owned()));
    files.push(VTT_FILE.to_owned());
    files.extend(images);
    upload(ctx, prefix, &out_dir, files).await?;
    let master = package::master_playlist(&video, audio.as_ref(), source.frame_rate);
    let master_key = format!("{prefix}{}", layout::MASTER_PLAYLIST);
    ctx.storage.put_bytes(&master_key, master.into(), content_type(&master_key)).await.map_err(JobError::storage)?;

    let mut renditions: Vec<Rendition> = video
        .iter()
        .map(|o| {
            let Track::Video(rung) = &o.track else { unreachable!("video renditions only") };
            let (a_peak, a_avg) = audio.as_ref().map(|a| (a.bandwidth, a.average_bandwidth)).unwrap_or((0, 0));
            Rendition {
                name: o.name.clone(),
                width: rung.width as i32,
                height: rung.height as i32,
                bandwidth: (o.bandwidth + a_peak) as i64,
                average_bandwidth: (o.average_bandwidth + a_avg) as i64,
                codecs: package::variant_codecs(o, audio.as_ref()),
                frame_rate: source.frame_rate,
                playlist_key: format!("{prefix}{}/index.m3u8", o.name),
            }
        })
        .collect();
    if let Some(a) = &audio {
        renditions.push(Rendition {
            name: a.name.clone(),
            width: 0,
            height: 0,
            bandwidth: a.bandwidth as i64,
            average_bandwidth: a.average_bandwidth as i64,
            codecs: a.codecs.clone(),
            frame_rate: 0.0,
            playlist_key: format!("{prefix}{}/index.m3u8", a.name),
        });
    }
    Ok(Transcoded { duration_seconds: top.duration, width: source.width as i32, height: source.height as i32, master_key, renditions, encrypted: key.is_some() })
}

/// Uploads `files` (relative to `out_dir`) under `prefix`, several at once.
async fn upload(ctx: &JobContext, prefix: &str, out_dir: &Path, files: Vec<String>) -> Result<(), JobError> {
    futures::stream::iter(files)
        .map(|f| async move {
            let key = format!("{prefix}{f}");
            ctx.storage.put_file(&key, &out_dir.join(&f), content_type(&key)).await
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .map_err(JobError::storage)?;
    Ok(())
}

async fn progress(ctx: &JobContext, job: &TranscodeJob, p: Progress) {
    if let Err(e) = ctx.cache.set_progress(job.video_id, &p).await {
        tracing::debug!(error = format!("{e:#}"), "could not record progress");
    }
}

/// Known layout names only; anything else is stored as bytes.
fn content_type(key: &str) -> &'static str {
    layout::content_type(key).unwrap_or("application/octet-stream")
}
