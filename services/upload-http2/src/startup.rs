//! Builds upload-http2: clients, migrations, topology, router, background
//! republisher. `build` binds the listener so tests can use port 0 and ask
//! for the real port before serving.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::queue::Publisher;
use shared::server::{with_operational_routes, Server};
use shared::videos::{republish_stranded, Videos};

use crate::configuration::Settings;
use crate::routes::{router, AppState, UploadMetrics};

pub struct Application {
    server: Server,
    republisher: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        shared::db::migrate(&pool).await?;
        let storage = settings.s3.store();
        storage.ensure_bucket().await?;
        let publisher = Arc::new(Publisher::new(settings.queue.clone()));
        publisher.channel().await?; // declares the topology before the first upload
        let cache = settings.redis.cache()?;
        let videos = Videos::new(pool.clone());
        let metrics = Metrics::new("upload-http2");
        tracing::info!(buffer_bytes = settings.upload.buffer_bytes(), "worst-case buffer per upload");

        let readiness = {
            let (pool, publisher, storage, cache) = (pool.clone(), publisher.clone(), storage.clone(), cache.clone());
            Readiness::new()
                .with("postgres", move || {
                    let pool = pool.clone();
                    async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(Into::into) }
                })
                .with("rabbitmq", move || {
                    let p = publisher.clone();
                    async move { p.channel().await.map(|_| ()) }
                })
                .with("s3", move || {
                    let s = storage.clone();
                    async move { s.ping().await }
                })
                .with("redis", move || {
                    let c = cache.clone();
                    async move { c.ping().await }
                })
        };
        let state = AppState {
            videos: videos.clone(),
            publisher: publisher.clone(),
            storage,
            cache,
            upload: settings.upload.clone(),
            metrics: UploadMetrics::new(&metrics),
        };
        let app = with_operational_routes(router(state), readiness, metrics);
        let listener = settings.http.bind().await?;
        let republisher = tokio::spawn(republish_stranded(videos, publisher, Duration::from_secs(30), 100));
        Ok(Self { server: Server::new(listener, app, settings.http.shutdown_grace.0), republisher })
    }

    pub fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let res = self.server.run_until(shutdown).await;
        self.republisher.abort();
        res
    }
}
