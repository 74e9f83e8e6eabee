//! Builds the streaming origin.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};
use shared::sessions::{Heartbeats, Sessions};
use shared::videos::Videos;

use crate::cap::BitrateCap;
use crate::configuration::Settings;
use crate::hls::{get_object, OriginState};
use crate::metrics::OriginMetrics;

/// Connects, migrates and binds; the returned server reports its port before serving.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let pool = settings.database.pool()?;
    shared::db::migrate(&pool).await?;
    let storage = settings.s3.store();
    storage.ensure_bucket().await?;
    let redis = settings.redis.cache()?;
    let metrics = Metrics::new("streaming");
    let origin_metrics = OriginMetrics::register(&metrics);
    let sessions = Sessions::new(redis.clone(), settings.session_ttl.0);
    let heartbeats = Heartbeats::new(sessions.clone(), &settings.node);
    let cap = Arc::new(BitrateCap::new(settings.cap.clone()));
    let state = OriginState {
        videos: Videos::new(pool.clone()),
        storage: storage.clone(),
        ready: moka::future::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(10)).build(),
        masters: moka::future::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(3600)).build(),
        sessions: sessions.clone(),
        heartbeats: heartbeats.clone(),
        cache: Arc::new(settings.cache.clone()),
        cap: cap.clone(),
        steering: Arc::new(settings.steering.clone()),
        metrics: origin_metrics.clone(),
    };
    let measuring = cap.spawn(sessions, heartbeats, origin_metrics);
    // Redis is not a readiness dependency: without it viewers still play,
    // only counts, caps and steering fall back to their defaults.
    let readiness = Readiness::new().postgres(pool).s3(storage);
    let router = Router::new()
        .route("/hls/{video_id}/{*object}", get(get_object))
        .route("/steering/{video_id}", get(crate::steering::get_steering))
        .route("/api/v1/videos/{video_id}/play", get(crate::steering::play))
        .route("/api/v1/videos/{video_id}/viewers", get(crate::viewers::for_video))
        .route("/api/v1/viewers", get(crate::viewers::overview))
        .with_state(state)
        .layer(shared::delivery::manifest_compression())
        .layer(shared::delivery::player_cors());
    let app = with_operational_routes(router, readiness, metrics);
    Ok(Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0).with_task(measuring))
}
