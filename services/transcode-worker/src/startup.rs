//! Builds the worker: clients, migrations, the consumer of the configured
//! mode, and a small HTTP server for health, metrics and the admin endpoints
//! (admin keys only). At start, content keys still wrapped under an older
//! master key are re-wrapped under the current one, in the background.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::playback::ContentKeys;
use shared::queue::DeadLetters;
use shared::server::{with_operational_routes, Server};
use shared::transcodes::Transcodes;
use shared::videos::Videos;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::configuration::Settings;
use crate::confine::Confinement;
use crate::consumer::Consumer;
use crate::job::JobContext;
use crate::metrics::WorkerMetrics;
use crate::settle::Settler;

pub struct Application {
    server: Server,
    consumer: Arc<Consumer>,
    grace: std::time::Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let backends = settings.backends.connect().await?;
        let (pool, storage, cache, publisher) = (backends.pool, backends.storage, backends.cache, backends.publisher);
        let reclaimed = crate::workdir::reclaim(&settings.transcode.work_dir);
        if reclaimed > 0 {
            tracing::info!(reclaimed, dir = %settings.transcode.work_dir.display(), "removed scratch folders of killed workers");
        }
        let metrics = Metrics::new("transcode-worker");
        let connected = Arc::new(AtomicBool::new(false));
        let worker_id = format!("{}-{}", hostname(), std::process::id());
        let transcodes = Transcodes::new(pool.clone());
        let keys = ContentKeys::new(pool.clone(), settings.master_keys.clone());
        tokio::spawn(rewrap(keys.clone()));
        let confinement = Arc::new(Confinement::new(&settings.transcode.formats, settings.transcode.network)?);
        tracing::info!(network_isolated = confinement.isolates_network(), formats = settings.transcode.formats, "ffmpeg confinement");
        let ctx = JobContext {
            transcodes: transcodes.clone(),
            videos: Videos::new(pool.clone()),
            keys,
            storage: storage.clone(),
            cache: cache.clone(),
            settings: Arc::new(settings.transcode.clone()),
            confinement,
            worker_id,
        };
        let settler = Settler { ctx, publisher: publisher.clone(), intake: settings.intake.clone(), metrics: WorkerMetrics::new(&metrics, settings.intake.mode) };
        let consumer = Arc::new(Consumer { queue: settings.backends.queue.clone(), settler, connected: connected.clone() });
        let readiness = {
            let ffmpeg = settings.transcode.ffmpeg.clone();
            Readiness::new()
                .postgres(pool.clone())
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
        let authenticator = settings.auth.authenticator(pool.clone());
        let admin = admin::router(
            AdminState { dead: Arc::new(DeadLetters::new(settings.backends.queue.clone())), publisher, transcodes, videos: Videos::new(pool) },
            authenticator,
        );
        let app = with_operational_routes(admin, readiness, metrics);
        let listener = settings.http.bind().await?;
        let grace = settings.http.shutdown_grace.0;
        Ok(Self { server: Server::new(listener, app, grace), consumer, grace })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Takes jobs and serves health until `shutdown`; in-flight jobs get the grace period.
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

/// Moves every content key to the first master key, without re-encoding.
/// Every worker does it at start; the update is conditional, so they agree.
async fn rewrap(keys: ContentKeys) {
    match keys.rewrap().await {
        Ok(n) => tracing::info!(rewrapped = n, "content keys re-wrapped under the current master key"),
        Err(e) => tracing::error!(error = format!("{e:#}"), "could not re-wrap content keys (is an old master key missing from CONTENT_MASTER_KEYS?)"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "worker".into())
}
