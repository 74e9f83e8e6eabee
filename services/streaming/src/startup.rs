//! Builds the streaming origin.

use axum::routing::get;
use axum::Router;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};
use shared::videos::Videos;

use crate::configuration::Settings;
use crate::hls::{get_object, OriginState};

/// Connects, migrates and binds; the returned server reports its port before serving.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let pool = settings.database.pool()?;
    shared::db::migrate(&pool).await?;
    let storage = settings.s3.store();
    storage.ensure_bucket().await?;
    let state = OriginState::new(Videos::new(pool.clone()), storage.clone());
    let readiness = Readiness::new().postgres(pool).s3(storage);
    let router = Router::new().route("/hls/{video_id}/{*object}", get(get_object)).with_state(state);
    let app = with_operational_routes(router, readiness, Metrics::new("streaming"));
    Ok(Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0))
}
