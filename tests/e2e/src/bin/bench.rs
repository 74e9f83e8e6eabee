//! The foundation benchmark (not a test): run by `scripts/bench` against the
//! native stack. Every figure is printed beside a baseline measured in the
//! same run, on the same bytes:
//!
//! 1. upload throughput through NGINX (HTTP/1.1 and HTTP/2+TLS) vs a direct
//!    S3 PUT of the same file;
//! 2. peak RSS growth of upload-http2 while those 1 GiB uploads stream;
//! 3. the worker's transcode time for a 30 s 1080p clip vs the identical
//!    ffmpeg command run bare.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use e2e::*;
use shared::configuration::Env;

const UPLOAD_BYTES: u64 = 1 << 30;
const MIB: f64 = (1 << 20) as f64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stack = Stack::from_env();
    let client = stack.client()?;
    let dir = tempfile::tempdir()?;
    let pid: u32 = std::fs::read_to_string(stack.stack_dir.join("pids/upload-http2.pid"))
        .context("upload-http2 pid (is the stack up?)")?
        .trim()
        .parse()?;

    println!("== upload: {} MiB of random bytes", UPLOAD_BYTES >> 20);
    let file = dir.path().join("upload.bin");
    write_random(&file, UPLOAD_BYTES).await?;

    let mut s3 = shared::storage::S3Settings::from_env(&mut Env::from_process());
    s3.bucket = "videos".into();
    let storage = s3.store();
    let started = Instant::now();
    storage.put_file("bench/direct-put", &file, "application/octet-stream").await?;
    let direct = UPLOAD_BYTES as f64 / MIB / started.elapsed().as_secs_f64();
    storage.delete_prefix("bench/").await?;
    println!("direct S3 PUT (baseline):          {direct:8.1} MiB/s");

    let baseline_rss = rss_kib(pid)?;
    let mut peak_rss = baseline_rss;
    for (label, base) in [("NGINX HTTP/1.1 (:8080)", &stack.nginx_http), ("NGINX HTTP/2+TLS (:8443)", &stack.nginx_https)] {
        let (rate, peak) = timed_upload(&client, base, &file, pid).await?;
        peak_rss = peak_rss.max(peak);
        println!("upload through {label:<24} {rate:8.1} MiB/s   ratio vs direct PUT: {:.2}", rate / direct);
    }
    println!(
        "upload-http2 RSS: before {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB during 1 GiB uploads (target: <= 64 MiB)",
        baseline_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        (peak_rss - baseline_rss) as f64 / 1024.0
    );
    std::fs::remove_file(&file)?;

    println!("== transcode: 30 s 1920x1080 clip");
    let clip = make_clip(dir.path(), "clip1080.mp4", 30, 1920, 1080)?;
    let created: serde_json::Value = upload_file(&client, &stack.nginx_http, &clip, "bench 1080p").await?.error_for_status()?.json().await?;
    let id = created["id"].as_str().context("no id")?.to_owned();
    let video = wait_until_settled(&client, &stack.nginx_http, &id, Duration::from_secs(1800)).await?;
    if video["status"] != "ready" {
        bail!("benchmark video failed: {}", video["error"]);
    }
    let db = database().await?;
    let worker_secs: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (finished_at - started_at))::float8 FROM transcode_attempts WHERE video_id = $1::uuid AND outcome = 'succeeded'",
    )
    .bind(&id)
    .fetch_one(&db)
    .await?;
    let bare_secs = bare_ffmpeg(&clip, dir.path()).await?;
    println!("worker job (download, probe, ffmpeg, measure, upload, commit): {worker_secs:6.1} s");
    println!("same ffmpeg command run bare:                                  {bare_secs:6.1} s");
    println!("ratio worker/bare: {:.2}", worker_secs / bare_secs);
    Ok(())
}

/// Streams the file through a front door while sampling upload-http2's RSS.
async fn timed_upload(client: &reqwest::Client, base: &str, file: &Path, pid: u32) -> anyhow::Result<(f64, u64)> {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let res = upload_file(client, base, file, "bench upload").await?;
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let status = res.status();
    if status != reqwest::StatusCode::CREATED {
        bail!("upload answered {status}: {}", res.text().await.unwrap_or_default());
    }
    Ok((UPLOAD_BYTES as f64 / MIB / elapsed, peak.load(Ordering::Relaxed)))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?)
}


/// The worker's own command line (same builder, ladder and preset), run directly.
async fn bare_ffmpeg(clip: &Path, dir: &Path) -> anyhow::Result<f64> {
    use transcode_worker::confine::{Confinement, NetworkIsolation, DEFAULT_FORMATS};
    use transcode_worker::{ffmpeg, ladder::Ladder, probe, thumbnails::Sprites};
    let preset = std::env::var("FFMPEG_PRESET").unwrap_or_else(|_| "veryfast".into());
    let ladder: Ladder = std::env::var("TRANSCODE_LADDER").unwrap_or_else(|_| transcode_worker::ladder::DEFAULT_LADDER.into()).parse().map_err(anyhow::Error::msg)?;
    // Confined as the worker is, so the comparison is like for like.
    let confinement = Confinement::new(DEFAULT_FORMATS, NetworkIsolation::Auto)?;
    let probed = probe::run("ffprobe", clip, &confinement, Duration::from_secs(30)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let source = probed.source;
    let rungs = ladder.plan(source.width, source.height);
    let out = dir.join("bare");
    for name in rungs.iter().map(|r| r.name.as_str()).chain([ffmpeg::AUDIO_NAME]) {
        std::fs::create_dir_all(out.join(name))?;
    }
    let sprites = Sprites::plan(&source);
    let encode = ffmpeg::Encode {
        input: clip,
        demuxer: &probed.demuxer,
        confinement: &confinement,
        clamp_fps: None,
        out_dir: &out,
        rungs: &rungs,
        source: &source,
        preset: &preset,
        sprites: &sprites,
    };
    let args = ffmpeg::args(&encode);
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(&args).stdout(std::process::Stdio::null());
    confinement.apply(&mut cmd);
    let status = cmd.status().await?;
    if !status.success() {
        bail!("bare ffmpeg failed");
    }
    Ok(started.elapsed().as_secs_f64())
}
