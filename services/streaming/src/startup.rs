//! Builds the streaming origin.

use std::future::Future;

use axum::routing::get;
use axum::Router;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};
use shared::videos::Videos;

use crate::configuration::Settings;
use crate::hls::{get_object, OriginState};

pub struct Application {
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        shared::db::migrate(&pool).await?;
        let storage = settings.s3.store();
        storage.ensure_bucket().await?;
        let state = OriginState::new(Videos::new(pool.clone()), storage.clone());
        let readiness = Readiness::new()
            .with("postgres", move || {
                let pool = pool.clone();
                async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(Into::into) }
            })
            .with("s3", move || {
                let s = storage.clone();
                async move { s.ping().await }
            });
        let router = Router::new().route("/hls/{video_id}/{*object}", get(get_object)).with_state(state);
        let app = with_operational_routes(router, readiness, Metrics::new("streaming"));
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
