//! Builds a CDN edge.

use axum::http::HeaderValue;
use axum::routing::{get, post};
use axum::Router;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::ratelimit::{Action, RateLimits};
use shared::server::{with_operational_routes, Server};
use shared::sessions::{Heartbeats, Sessions};

use crate::access::Gate;
use crate::configuration::Settings;
use crate::budget::FlightBudget;
use crate::disk::Disk;
use crate::fetch::Origin;
use crate::flight::Flights;
use crate::memory::Memory;
use crate::negative::Negative;
use crate::tiers::Tiers;
use crate::metrics::EdgeMetrics;
use crate::purge::{purge, Purger};
use crate::serve::{proxy, EdgeState};

/// Builds both tiers (loading the disk one), the origin client and the
/// purge listener, and binds; serving starts with `run_until_stopped`.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let metrics = Metrics::with_labels("cdn-edge", &[("region", &settings.region), ("node", &settings.node)]);
    let edge_metrics = EdgeMetrics::register(&metrics);
    let memory = Memory::new(settings.cache_bytes.0);
    let disk = match &settings.disk_dir {
        Some(dir) => {
            let (dir, bytes) = (dir.clone(), settings.disk_bytes.0);
            Some(tokio::task::spawn_blocking(move || Disk::open(&dir, bytes)).await??)
        }
        None => None,
    };
    let origin = Origin::new(&settings.origin_url, edge_metrics.origin_fetches.clone())?;
    let live_origin = settings.live_origin_url.as_deref().map(|u| Origin::new(u, edge_metrics.origin_fetches.clone())).transpose()?;
    let redis = settings.redis.cache()?;
    let heartbeats = Heartbeats::new(Sessions::new(redis.clone(), settings.session_ttl.0), &settings.node);
    let tiers = Tiers { memory, disk, negative: Negative::new(settings.negative_ttl.0, settings.negative_bytes.0) };
    let budget = FlightBudget::new(settings.flight_bytes.0, edge_metrics.flight_bytes.clone(), edge_metrics.flight_spills.clone());
    let state = EdgeState {
        // Live objects share the tiers and the byte budget; their keys start with /live/.
        live: live_origin.map(|o| Flights::new(o, tiers.clone(), settings.max_object_bytes.0, budget.clone())),
        flights: Flights::new(origin, tiers.clone(), settings.max_object_bytes.0, budget),
        tiers: tiers.clone(),
        region: HeaderValue::from_str(&settings.region)?,
        metrics: edge_metrics.clone(),
        heartbeats,
        gate: {
            if settings.playback.is_empty() {
                tracing::warn!("PLAYBACK_PUBLIC_KEYS is empty: every unlisted and private video will be refused here");
            }
            Gate::new(settings.playback.clone(), edge_metrics.token_refusals.clone())
        },
    };
    let purger = Purger { id: uuid::Uuid::new_v4(), tiers, flights: state.flights.clone(), metrics: edge_metrics.clone(), redis, token: settings.purge_token.clone() };
    // Purges sent while this edge was down must not come back from its disk.
    match purger.replay_missed().await {
        Ok(n) if n > 0 => tracing::info!(dropped = n, "replayed missed purges against the disk tier"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = format!("{e:#}"), "could not replay missed purges (Redis down?); the disk tier may hold purged objects until they expire"),
    }
    let subscriber = purger.clone().spawn_subscriber();
    let gauges = tokio::spawn(update_gauges(state.clone()));
    // An edge is ready without its origin or Redis: it keeps serving what it
    // holds, and taking every edge out of rotation when the origin blips
    // would turn a partial outage into a total one.
    let readiness = Readiness::new();
    let limits = RateLimits::new(settings.rate_limits.clone(), &metrics);
    let router = Router::new()
        .route("/hls/{*path}", get(proxy))
        .route("/steering/{*path}", get(proxy))
        .route("/live/{*path}", get(proxy))
        .route_layer(limits.layer(Action::EdgeObject))
        .with_state(state)
        // Limited before the token is checked: also a brake on guessing it.
        .route("/purge", post(purge).with_state(purger).route_layer(limits.layer(Action::Purge)))
        .layer(shared::delivery::manifest_compression())
        .layer(shared::delivery::player_cors());
    let app = with_operational_routes(router, readiness, metrics).layer(axum::middleware::from_fn(shared::delivery::paths::refuse_unnormalised));
    Ok(Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0).with_task(subscriber).with_task(gauges))
}

/// Tier sizes and the local viewer count, for /metrics.
async fn update_gauges(st: EdgeState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        st.metrics.memory_bytes.set(st.tiers.memory.bytes() as i64);
        st.metrics.disk_bytes.set(st.tiers.disk.as_ref().map_or(0, |d| d.bytes()) as i64);
        st.metrics.negative_bytes.set(st.tiers.negative.bytes() as i64);
        st.metrics.viewers_live.set(st.heartbeats.live_here() as i64);
    }
}
