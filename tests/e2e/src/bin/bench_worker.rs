//! The worker benchmark (not a test): run by `scripts/bench-worker`. One run,
//! one isolated world (database, bucket, AMQP and Redis prefixes) on the
//! machine's real RabbitMQ, PostgreSQL, Redis and Garage, real worker
//! processes:
//!
//! 1. job pickup latency (enqueue → the worker starts the job, p50 and p99)
//!    for a push worker and a pull worker, over 200 tiny jobs each, arriving
//!    at the same pseudo-random (exponential) times for both modes, at a
//!    rate the worker keeps up with (a tiny job takes ~0.4 s; two run at once),
//!    so the figure is pickup, not queueing;
//! 2. jobs per minute with 1 and with 2 workers draining the same queued
//!    batch, and the ratio between them.
//!
//! Pickup is measured between two timestamps of one host: the job's
//! `enqueued_at` (set just before the confirmed publish) and its attempt
//! row's `started_at` (the worker's claim transaction).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shared::queue::{Publisher, TranscodeJob};
use shared::storage::Storage;
use shared::testing::World;
use shared::videos::Videos;
use e2e::percentile;
use uuid::Uuid;

const LATENCY_JOBS: usize = 200;
const MEAN_GAP_MS: f64 = 500.0;
const BATCH_JOBS: usize = 30;

/// BENCH_WORKER_JOBS / BENCH_WORKER_GAP_MS override the latency run (for quick trials).
fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Bench {
    world: World,
    videos: Videos,
    publisher: Publisher,
    storage: Storage,
    scratch: tempfile::TempDir,
}

impl Bench {
    fn worker(&self, mode: &str, concurrency: u16) -> anyhow::Result<e2e::Process> {
        let bin = e2e::binary("transcode-worker");
        let child = Command::new(&bin)
            .envs(self.world.env())
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env("WORKER_MODE", mode)
            .env("WORKER_CONCURRENCY", concurrency.to_string())
            .env("WORK_DIR", self.scratch.path().join("work"))
            .env("TRANSCODE_LADDER", "240p=300k")
            .env("FFMPEG_PRESET", "ultrafast")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(e2e::Process(child))
    }

    /// Registers `n` videos with `bytes` as their source; their jobs, unpublished.
    async fn register(&self, bytes: &[u8], n: usize) -> anyhow::Result<Vec<TranscodeJob>> {
        let mut jobs = Vec::with_capacity(n);
        for _ in 0..n {
            jobs.push(shared::testing::register_source(&self.storage, &self.videos, bytes).await?);
        }
        Ok(jobs)
    }

    async fn publish_now(&self, job: &TranscodeJob) -> anyhow::Result<TranscodeJob> {
        let job = TranscodeJob { enqueued_at: time::OffsetDateTime::now_utc(), ..job.clone() };
        self.publisher.publish(&job).await?;
        Ok(job)
    }

    async fn wait_ready(&self, ids: &[Uuid], within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ready: i64 = sqlx::query_scalar("SELECT count(*) FROM videos WHERE id = ANY($1) AND status = 'ready'")
                .bind(ids)
                .fetch_one(self.videos.pool())
                .await?;
            if ready as usize == ids.len() {
                return Ok(());
            }
            let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM videos WHERE id = ANY($1) AND status = 'failed'").bind(ids).fetch_one(self.videos.pool()).await?;
            if failed > 0 {
                bail!("{failed} benchmark jobs failed");
            }
            if Instant::now() > deadline {
                bail!("only {ready} of {} jobs ready after {within:?}", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A warm-up job: the worker is connected and its caches are warm.
    async fn warm_up(&self, source: &[u8]) -> anyhow::Result<()> {
        let job = self.register(source, 1).await?.remove(0);
        self.publish_now(&job).await?;
        self.wait_ready(&[job.video_id], Duration::from_secs(60)).await
    }

    /// Pickup latencies (ms) of `jobs` published at `gaps`.
    async fn pickup(&self, mode: &str, source: &[u8], gaps: &[Duration]) -> anyhow::Result<Vec<f64>> {
        let _w = self.worker(mode, 2)?;
        self.warm_up(source).await?;
        let jobs = self.register(source, gaps.len()).await?;
        let mut sent = Vec::with_capacity(jobs.len());
        for (job, gap) in jobs.iter().zip(gaps) {
            tokio::time::sleep(*gap).await;
            sent.push(self.publish_now(job).await?);
        }
        let ids: Vec<Uuid> = sent.iter().map(|j| j.video_id).collect();
        self.wait_ready(&ids, Duration::from_secs(300)).await?;
        let mut latencies = Vec::with_capacity(sent.len());
        for job in &sent {
            let started: time::OffsetDateTime = sqlx::query_scalar("SELECT min(started_at) FROM transcode_attempts WHERE video_id = $1")
                .bind(job.video_id)
                .fetch_one(self.videos.pool())
                .await?;
            latencies.push((started - job.enqueued_at).as_seconds_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }

    /// Jobs per minute for `workers` push workers draining a queued batch.
    async fn throughput(&self, workers: usize, source: &[u8]) -> anyhow::Result<f64> {
        let jobs = self.register(source, BATCH_JOBS).await?;
        let _w: Vec<e2e::Process> = (0..workers).map(|_| self.worker("push", 1)).collect::<Result<_, _>>()?;
        for _ in 0..workers {
            self.warm_up(source).await?;
        }
        let started = Instant::now();
        for job in &jobs {
            self.publish_now(job).await?;
        }
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.video_id).collect();
        self.wait_ready(&ids, Duration::from_secs(600)).await?;
        Ok(BATCH_JOBS as f64 * 60.0 / started.elapsed().as_secs_f64())
    }
}

/// Exponential gaps with the given mean, from a fixed seed: both modes see the same arrivals.
fn arrivals(n: usize, mean_ms: f64) -> Vec<Duration> {
    let mut x: u64 = 0x2545F4914F6CDD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            Duration::from_secs_f64((-mean_ms * u.ln()).min(mean_ms * 8.0) / 1000.0)
        })
        .collect()
}

fn clip(dir: &Path, name: &str, secs: u32, w: u32, h: u32) -> anyhow::Result<Vec<u8>> {
    Ok(std::fs::read(e2e::make_clip(dir, name, secs, w, h)?)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let world = World::new().await;
    let pool = world.backends.database.pool()?;
    let storage = world.backends.s3.store();
    storage.ensure_bucket().await?;
    let bench = Bench { publisher: Publisher::new(world.backends.queue.clone()), videos: Videos::new(pool), storage, world, scratch: tempfile::tempdir()? };
    let tiny = clip(bench.scratch.path(), "tiny.mp4", 1, 128, 72)?;
    let small = clip(bench.scratch.path(), "small.mp4", 2, 320, 180)?;

    let (jobs, gap) = (knob("BENCH_WORKER_JOBS", LATENCY_JOBS), knob("BENCH_WORKER_GAP_MS", MEAN_GAP_MS));
    let gaps = arrivals(jobs, gap);
    println!("[bench-worker] pickup latency, enqueue → start: {jobs} tiny jobs (1 s 128x72) per mode, one worker of concurrency 2,");
    println!("[bench-worker]   arriving at the same exponential times for both modes (mean gap {gap} ms); pull polls back off 50 ms → 2 s");
    let mut p50 = Vec::new();
    for mode in ["push", "pull"] {
        let l = bench.pickup(mode, &tiny, &gaps).await?;
        let (a, b) = (percentile(&l, 0.50), percentile(&l, 0.99));
        println!("  {mode:<5} p50 {a:>8.1} ms   p99 {b:>8.1} ms   max {:>8.1} ms", l[l.len() - 1]);
        p50.push(a);
    }
    println!("  ratio pull/push at p50: {:.2}", p50[1] / p50[0].max(0.001));

    if std::env::var("BENCH_WORKER_SKIP_THROUGHPUT").is_ok() {
        return Ok(());
    }
    println!("[bench-worker] throughput: {BATCH_JOBS} jobs (2 s 320x180 clips) queued at once, push workers of concurrency 1, 2 cores");
    let one = bench.throughput(1, &small).await?;
    println!("  1 worker   {one:>7.1} jobs/min   (baseline)");
    let two = bench.throughput(2, &small).await?;
    println!("  2 workers  {two:>7.1} jobs/min   ratio vs 1 worker: {:.2}", two / one);
    Ok(())
}
