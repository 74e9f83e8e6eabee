//! Builds the worker: clients, migrations, the consumer, and a small HTTP
//! server for health and metrics.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::Router;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};
use shared::videos::Videos;
use tokio_util::sync::CancellationToken;

use crate::configuration::Settings;
use crate::consumer::Consumer;
use crate::job::JobContext;

#[derive(Clone)]
pub struct WorkerMetrics {
    pub jobs: IntCounterVec,
    pub duration: Histogram,
    pub in_flight: IntGauge,
}

impl WorkerMetrics {
    fn new(m: &Metrics) -> Self {
        Self {
            jobs: m.register(IntCounterVec::new(Opts::new("transcode_jobs_total", "Jobs by outcome"), &["outcome"]).unwrap()),
            duration: m.register(
                Histogram::with_opts(
                    HistogramOpts::new("transcode_job_duration_seconds", "Time from job start to settlement")
                        .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
                )
                .unwrap(),
            ),
            in_flight: m.register(IntGauge::new("transcode_jobs_in_flight", "Jobs running now").unwrap()),
        }
    }
}

pub struct Application {
    server: Server,
    consumer: Arc<Consumer>,
    grace: std::time::Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let backends = settings.backends.connect().await?;
        let (pool, storage, cache, publisher) = (backends.pool, backends.storage, backends.cache, backends.publisher);
        let metrics = Metrics::new("transcode-worker");
        let connected = Arc::new(AtomicBool::new(false));
        let worker_id = format!("{}-{}", hostname(), std::process::id());
        let ctx = JobContext {
            videos: Videos::new(pool.clone()),
            storage: storage.clone(),
            cache: cache.clone(),
            settings: Arc::new(settings.transcode.clone()),
            worker_id,
        };
        let consumer = Arc::new(Consumer {
            queue: settings.backends.queue.clone(),
            ctx,
            publisher,
            concurrency: settings.concurrency,
            max_attempts: settings.max_attempts,
            metrics: WorkerMetrics::new(&metrics),
            connected: connected.clone(),
        });
        let readiness = {
            let ffmpeg = settings.transcode.ffmpeg.clone();
            Readiness::new()
                .postgres(pool)
                .with("rabbitmq", move || {
                    let up = connected.load(Ordering::Relaxed);
                    async move { if up { Ok(()) } else { anyhow::bail!("consumer not connected") } }
                })
                .s3(storage)
                .redis(cache)
                .with("ffmpeg", move || {
                    let bin = ffmpeg.clone();
                    async move {
                        let ok = tokio::process::Command::new(&bin).arg("-version").output().await?.status.success();
                        if ok { Ok(()) } else { anyhow::bail!("{bin} -version failed") }
                    }
                })
        };
        let app = with_operational_routes(Router::new(), readiness, metrics);
        let listener = settings.http.bind().await?;
        let grace = settings.http.shutdown_grace.0;
        Ok(Self { server: Server::new(listener, app, grace), consumer, grace })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Consumes and serves health until `shutdown`; in-flight jobs get the grace period.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let worker = tokio::spawn(self.consumer.clone().run(stop.clone(), self.grace));
        let stop_server = stop.clone();
        let server = tokio::spawn(self.server.run_until_stopped(async move { stop_server.cancelled().await }));
        shutdown.await;
        stop.cancel();
        let _ = worker.await;
        server.await.map_err(std::io::Error::other)?
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "worker".into())
}
