//! A broadcast's recording handed to the catalogue as a video: the top
//! video rung and the audio, as recorded to S3 (init segment + segments,
//! one file per encoder generation), muxed by ffmpeg without re-encoding
//! into one MP4, stored as the video's source and enqueued like any upload.
//! The transcode worker then makes the catalogue's ladder, poster and
//! thumbnails, and the replay plays under `/hls/{id}/` with ENDLIST.
//!
//! Why through the worker rather than publishing the live renditions: the
//! replay then has exactly what an upload has (VOD ladder, DASH, poster,
//! thumbnails, encryption when asked), and the live rungs' 1 s key frames
//! and zero-latency tuning are not what VOD viewers should download.
//!
//! One replay at a time per ingest (ffmpeg copies are I/O, not CPU, but two
//! 2-hour recordings at once would double the scratch disk).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use media::llhls::names::Object;
use sha2::{Digest, Sha256};
use shared::queue::Publisher;
use shared::storage::{Storage, Stored};
use shared::videos::{register_and_enqueue, NewVideo, Videos, Visibility};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::broadcast::Broadcast;
use crate::catalogue::LiveStreams;
use crate::dvr::{self, Recorded};
use crate::metrics::LiveMetrics;
use crate::rendition::{Kind, Rendition};

#[derive(Clone)]
pub struct Replays {
    pub storage: Storage,
    pub videos: Videos,
    pub publisher: Arc<Publisher>,
    pub streams: LiveStreams,
    pub work_dir: PathBuf,
    pub ffmpeg: String,
    pub metrics: LiveMetrics,
    pub one_at_a_time: Arc<Semaphore>,
}

impl Replays {
    /// Makes the replay of an ended broadcast; failures are logged and counted.
    pub async fn make(&self, b: Arc<Broadcast>) {
        let _turn = self.one_at_a_time.acquire().await;
        b.recorder.flush().await;
        let outcome = match self.build(&b).await {
            Ok(Some(video)) => {
                tracing::info!(stream = %b.stream.id, broadcast = %b.id, video = %video, "replay handed to the catalogue");
                if let Err(e) = self.storage.delete_prefix(&dvr::prefix(b.id)).await {
                    tracing::warn!(error = format!("{e:#}"), "could not delete the DVR objects of a replayed broadcast");
                }
                self.mark_ended(&b, Some(video)).await;
                "registered"
            }
            Ok(None) => {
                tracing::warn!(stream = %b.stream.id, broadcast = %b.id, "broadcast ended with no complete segment: no replay");
                self.mark_ended(&b, None).await;
                "empty"
            }
            Err(e) => {
                // The DVR objects stay in S3 under live/{broadcast}/ for an operator.
                tracing::error!(stream = %b.stream.id, broadcast = %b.id, error = format!("{e:#}"), "replay failed");
                self.mark_ended(&b, None).await;
                "failed"
            }
        };
        self.metrics.replays.with_label_values(&[outcome]).inc();
    }

    async fn mark_ended(&self, b: &Broadcast, video: Option<Uuid>) {
        if let Err(e) = self.streams.ended(b.stream.id, video).await {
            tracing::error!(error = format!("{e:#}"), "could not record the end of a broadcast");
        }
    }

    async fn build(&self, b: &Broadcast) -> anyhow::Result<Option<Uuid>> {
        let renditions = b.renditions();
        let Some(video) = renditions.iter().find(|r| matches!(r.kind, Kind::Video { .. })) else { return Ok(None) };
        let audio = renditions.iter().find(|r| matches!(r.kind, Kind::Audio { .. }));
        let recorded = b.recorder.recorded();
        let mut generations: Vec<u32> = recorded.iter().filter(|r| r.rendition == video.name).map(|r| r.generation).collect();
        generations.dedup();
        if generations.is_empty() {
            return Ok(None);
        }
        let dir = self.work_dir.join(format!("replay-{}", b.id));
        tokio::fs::create_dir_all(&dir).await?;
        let result = self.assemble(b, video, audio, &recorded, &generations, &dir).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result.map(Some)
    }

    async fn assemble(&self, b: &Broadcast, video: &Rendition, audio: Option<&Arc<Rendition>>, recorded: &[Recorded], generations: &[u32], dir: &Path) -> anyhow::Result<Uuid> {
        let mut pieces = Vec::new();
        for g in generations {
            let v = dir.join(format!("video-{g}.mp4"));
            self.concat(b.id, video, *g, recorded, &v).await?;
            let mut args: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into(), "-y".into(), "-i".into(), path(&v)];
            if let Some(a) = audio {
                let ap = dir.join(format!("audio-{g}.mp4"));
                if self.concat(b.id, a, *g, recorded, &ap).await? {
                    args.extend(["-i".into(), path(&ap), "-map".into(), "0:v".into(), "-map".into(), "1:a".into()]);
                }
            }
            let piece = dir.join(format!("piece-{g}.mp4"));
            args.extend(["-c".into(), "copy".into(), "-movflags".into(), "+faststart".into(), path(&piece)]);
            self.ffmpeg(&args).await?;
            pieces.push(piece);
        }
        let source = if pieces.len() == 1 {
            pieces.remove(0)
        } else {
            // Encoder restarts: the pieces one after another (their clocks each start at 0).
            let list = dir.join("pieces.txt");
            let text: String = pieces.iter().map(|p| format!("file '{}'\n", path(p))).collect();
            tokio::fs::write(&list, text).await?;
            let out = dir.join("source.mp4");
            self.ffmpeg(&["-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", &path(&list), "-c", "copy", "-movflags", "+faststart", &path(&out)].map(String::from))
                .await?;
            out
        };
        let (size, sha256) = digest(&source).await?;
        let id = Uuid::now_v7();
        let key = shared::layout::source(id);
        self.storage.put_file(&key, &source, "video/mp4").await?;
        let new = NewVideo {
            id,
            owner_id: Some(b.stream.owner_id),
            visibility: Visibility::Public,
            title: b.stream.title.clone(),
            description: format!("Replay of the live broadcast of {}", time::OffsetDateTime::from(b.started).date()),
            content_type: "video/mp4".into(),
            stored: Stored { key, size, sha256 },
        };
        let registered = register_and_enqueue(&self.videos, &self.publisher, new).await?;
        Ok(registered.video.id)
    }

    /// Rendition `r`'s init segment of generation `g` and its recorded
    /// segments of that generation, in order, into `out`. False if none.
    async fn concat(&self, broadcast: Uuid, r: &Rendition, g: u32, recorded: &[Recorded], out: &Path) -> anyhow::Result<bool> {
        let mut msns: Vec<u64> = recorded.iter().filter(|x| x.rendition == r.name && x.generation == g).map(|x| x.msn).collect();
        if msns.is_empty() {
            return Ok(false);
        }
        msns.sort_unstable();
        let init = r.init(g).with_context(|| format!("init segment {g} of {} is not held", r.name))?;
        let mut file = tokio::fs::File::create(out).await?;
        file.write_all(&init).await?;
        for msn in msns {
            let key = dvr::key(broadcast, &r.name, Object::Segment { msn });
            let obj = self.storage.get(&key).await?.with_context(|| format!("{key} is missing from S3"))?;
            tokio::io::copy(&mut obj.body.into_async_read(), &mut file).await.with_context(|| format!("reading {key}"))?;
        }
        file.flush().await?;
        Ok(true)
    }

    async fn ffmpeg(&self, args: &[String]) -> anyhow::Result<()> {
        let out = tokio::process::Command::new(&self.ffmpeg).args(args).stdin(std::process::Stdio::null()).output().await?;
        anyhow::ensure!(out.status.success(), "ffmpeg {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        Ok(())
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

async fn digest(p: &Path) -> anyhow::Result<(u64, String)> {
    let p = p.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h)?;
        Ok((n, hex::encode(h.finalize())))
    })
    .await?
}
