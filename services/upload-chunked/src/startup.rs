//! Builds upload-chunked.

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use shared::error::Problem;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::queue::Publisher;
use shared::server::{with_operational_routes, Server};

use crate::configuration::Settings;

pub struct Application {
    server: Server,
}

async fn not_yet() -> Problem {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "tus-not-implemented",
        "Resumable uploads are not available yet",
        "This deployment does not accept tus uploads yet. Upload with POST /api/v1/videos instead.",
    )
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        shared::db::migrate(&pool).await?;
        let storage = settings.s3.store();
        storage.ensure_bucket().await?;
        let cache = settings.redis.cache()?;
        let publisher = Arc::new(Publisher::new(settings.queue.clone()));
        let readiness = Readiness::new()
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
            });
        let router = Router::new().route("/api/v1/uploads", any(not_yet)).route("/api/v1/uploads/{*rest}", any(not_yet));
        let app = with_operational_routes(router, readiness, Metrics::new("upload-chunked"));
        let listener = settings.http.bind().await?;
        Ok(Self { server: Server::new(listener, app, settings.http.shutdown_grace.0) })
    }

    pub fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        self.server.run_until(shutdown).await
    }
}
