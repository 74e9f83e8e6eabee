//! Builds the streaming origin.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::ratelimit::{Action, RateLimits};
use shared::server::{with_operational_routes, Server};
use shared::sessions::{Heartbeats, Sessions};
use shared::videos::Videos;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::cap::BitrateCap;
use crate::configuration::Settings;
use crate::hls::{get_object, CacheHeaders, OriginState};
use crate::metrics::OriginMetrics;

/// Stored playlist texts kept in memory, in bytes.
const PLAYLIST_CACHE_BYTES: u64 = 64 << 20;
/// Unknown video ids remembered at once (a few MiB at most).
const ABSENT_IDS: u64 = 100_000;

/// Connects, migrates and binds; the returned server reports its port before serving.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let pool = settings.database.pool()?;
    shared::db::migrate(&pool).await?;
    let storage = settings.s3.store();
    storage.ensure_bucket().await?;
    let redis = settings.redis.cache()?;
    let metrics = Metrics::new("streaming");
    let origin_metrics = OriginMetrics::register(&metrics);
    // Masters and play URLs mint sessions: limited per client.
    let sessions_limit = RateLimits::new(settings.rate_limits.clone(), &metrics).layer(Action::SessionIssue);
    let sessions = Sessions::new(redis.clone(), settings.session_ttl.0);
    let heartbeats = Heartbeats::new(sessions.clone(), &settings.node);
    let cap = Arc::new(BitrateCap::new(settings.cap.clone()));
    let authenticator = settings.auth.authenticator(pool.clone());
    let playback = &settings.playback;
    let state = OriginState {
        videos: Videos::new(pool.clone()),
        storage: storage.clone(),
        ready: moka::future::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(10)).build(),
        absent: (!settings.negative_ttl.0.is_zero()).then(|| moka::future::Cache::builder().max_capacity(ABSENT_IDS).time_to_live(settings.negative_ttl.0).build()),
        regions: Arc::new(settings.regions.clone()),
        playlists: moka::future::Cache::builder()
            .max_capacity(PLAYLIST_CACHE_BYTES)
            .weigher(|k: &String, v: &Arc<str>| (k.len() + v.len()).try_into().unwrap_or(u32::MAX))
            .time_to_live(Duration::from_secs(3600))
            .build(),
        sessions: sessions.clone(),
        heartbeats: heartbeats.clone(),
        cache: Arc::new(CacheHeaders::new(&settings.cache)?),
        cap: cap.clone(),
        steering: Arc::new(settings.steering.clone()),
        metrics: origin_metrics.clone(),
        view_window: settings.view_window.0,
        signer: playback.signer.clone(),
        verifier: playback.signer.verifier(),
        token_ttl: playback.token_ttl.0,
        keys: shared::playback::ContentKeys::new(pool.clone(), playback.masters.clone()),
        live: settings.live_origin_url.as_deref().map(crate::live::LiveOrigin::new).transpose()?,
    };
    let measuring = cap.spawn(sessions, heartbeats, origin_metrics);
    // A purge follows every visibility change and deletion: the cached facts
    // of that video go too, or an edge refetching at once after the purge
    // would be answered with the old visibility (and cache it for a year).
    let (ready, absent) = (state.ready.clone(), state.absent.clone());
    let forgetting = shared::purge::spawn_listener(redis.clone(), shared::purge::origin_channel(&redis), move |msg| {
        if let Some(id) = msg.purge.video_id() {
            let (ready, absent) = (ready.clone(), absent.clone());
            tokio::spawn(async move {
                ready.invalidate(&id).await;
                if let Some(absent) = absent {
                    absent.invalidate(&id).await;
                }
            });
        }
    });
    // Redis is not a readiness dependency: without it viewers still play,
    // only counts, caps and steering fall back to their defaults.
    let readiness = Readiness::new().postgres(pool).s3(storage);
    // Steering and viewer answers are about this moment: never stored. The
    // API routes know their caller (an API key is optional; see each handler).
    let live = Router::new()
        .route("/api/v1/videos/{video_id}/play", get(crate::steering::play).route_layer(sessions_limit.clone()))
        .route("/api/v1/videos/{video_id}/viewers", get(crate::viewers::for_video))
        .route("/api/v1/viewers", get(crate::viewers::overview))
        .route_layer(axum::middleware::from_fn_with_state(authenticator, shared::auth::authenticate))
        // After the layer: steering never asks who calls, so a key costs it no lookup.
        .route("/steering/{video_id}", get(crate::steering::get_steering))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    let router = Router::new()
        .route("/hls/{video_id}/master.m3u8", get(crate::master::get_master).route_layer(sessions_limit.clone()))
        .route("/live/{playback}/master.m3u8", get(crate::live::get_live_master).route_layer(sessions_limit))
        .route(&format!("/hls/{{video_id}}/{}", shared::playback::KEY_OBJECT), get(crate::key::get_key))
        .route("/hls/{video_id}/{*object}", get(get_object))
        .merge(live)
        .with_state(state)
        .layer(shared::delivery::manifest_compression())
        .layer(shared::delivery::player_cors());
    let app = with_operational_routes(router, readiness, metrics).layer(axum::middleware::from_fn(shared::delivery::paths::refuse_unnormalised));
    Ok(Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0).with_task(measuring).with_task(forgetting))
}
