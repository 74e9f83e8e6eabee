//! Builds live-ingest: backends, the live-stream catalogue, the RTMP
//! listener (bound here, so a taken port fails start-up), the live origin
//! and the API. Streams an earlier process left `live` are reset to idle:
//! nothing publishes to them any more.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};
use shared::videos::Videos;

use crate::catalogue::LiveStreams;
use crate::configuration::Settings;
use crate::metrics::LiveMetrics;
use crate::on_air::OnAir;
use crate::replay::Replays;

pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    Ok(build_app(settings).await?.0)
}

/// The server and the RTMP address it took (tests ask for port 0).
pub async fn build_app(settings: Settings) -> anyhow::Result<(Server, std::net::SocketAddr)> {
    let backends = settings.backends.connect().await?;
    let metrics = Metrics::new("live-ingest");
    let live_metrics = LiveMetrics::register(&metrics);
    let streams = LiveStreams::new(backends.pool.clone());
    let orphans = streams.reset_orphans().await?;
    if orphans > 0 {
        tracing::warn!(orphans, "streams left live by an earlier process were reset to idle");
    }
    tokio::fs::create_dir_all(&settings.work_dir).await?;
    let replays = Replays {
        storage: backends.storage.clone(),
        videos: Videos::new(backends.pool.clone()),
        publisher: backends.publisher.clone(),
        streams: streams.clone(),
        work_dir: settings.work_dir.clone().into(),
        ffmpeg: settings.encoder.ffmpeg.clone(),
        metrics: live_metrics.clone(),
        one_at_a_time: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let rtmp = crate::rtmp::bind(&settings.rtmp_addr).await?;
    let rtmp_addr = rtmp.local_addr()?;
    tracing::info!(addr = %rtmp_addr, "RTMP listening");
    let auth = settings.auth.authenticator(backends.pool.clone());
    let readiness = backends.readiness();
    let watch = shared::watch::Hub::new(settings.events.clone(), &metrics);
    let sessions = shared::sessions::Sessions::new(backends.cache.clone(), settings.session_ttl.0);
    let on_air = OnAir::new(streams, backends.storage.clone(), live_metrics, Arc::new(settings.clone()), replays, watch, sessions);
    let api = Router::new()
        .route("/api/v1/live", get(crate::api::list).post(crate::api::create).layer(DefaultBodyLimit::max(crate::api::BODY_LIMIT)))
        .route("/api/v1/live/{id}", get(crate::api::get).delete(crate::api::delete))
        .route("/api/v1/live/{id}/events", get(crate::events::live_events))
        .route_layer(axum::middleware::from_fn_with_state(auth, shared::auth::authenticate));
    let live = Router::new()
        .route("/live/{playback}/master.m3u8", get(crate::origin::get_master))
        .route("/live/{playback}/{broadcast}/{rendition}/{object}", get(crate::origin::get_object))
        .layer(shared::delivery::manifest_compression())
        .layer(shared::delivery::player_cors());
    let router = api.merge(live).with_state(on_air.clone());
    let app = with_operational_routes(router, readiness, metrics).layer(axum::middleware::from_fn(shared::delivery::paths::refuse_unnormalised));
    let serving = tokio::spawn(crate::rtmp::serve(rtmp, on_air));
    Ok((Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0).with_task(serving), rtmp_addr))
}
