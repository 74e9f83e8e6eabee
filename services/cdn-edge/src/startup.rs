//! Builds a CDN edge.

use axum::http::HeaderValue;
use axum::routing::get;
use axum::Router;
use prometheus::{IntCounter, IntCounterVec, Opts};
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};

use crate::cache::new_cache;
use crate::configuration::Settings;
use crate::fetch::Origin;
use crate::serve::{proxy, EdgeState};

/// Builds the cache and origin client and binds; serving starts with `run_until_stopped`.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let metrics = Metrics::new("cdn-edge");
    let fetches = metrics.register(IntCounter::new("edge_origin_fetches_total", "Requests sent to the origin").unwrap());
    let requests = metrics.register(
        IntCounterVec::new(Opts::new("edge_requests_total", "Viewer requests by cache outcome"), &["cache"]).unwrap(),
    );
    let state = EdgeState {
        cache: new_cache(settings.cache_bytes.0),
        origin: Origin::new(&settings.origin_url, settings.max_object_bytes.0, fetches)?,
        region: HeaderValue::from_str(&settings.region)?,
        requests,
    };
    // An edge is ready without its origin: it keeps serving what it holds,
    // and taking every edge out of rotation when the origin blips would
    // turn a partial outage into a total one.
    let readiness = Readiness::new();
    let router = Router::new().route("/hls/{*path}", get(proxy)).with_state(state);
    let app = with_operational_routes(router, readiness, metrics);
    Ok(Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0))
}
