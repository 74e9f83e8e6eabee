//! Builds upload-chunked: backends, the tus store, the router with CORS and
//! the API-key layer (keys looked up in the service's own PostgreSQL), and
//! the background tasks (expiry sweeper, job republisher).

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Method};
use shared::budget::Budget;
use shared::metrics::Metrics;
use shared::ratelimit::{Action, RateLimits};
use shared::server::{with_operational_routes, Server};
use shared::videos::Videos;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::configuration::{Settings, TusSettings};
use crate::finish::Finisher;
use crate::handlers::{self, AppState, TusMetrics};
use crate::progress::ProgressBoard;
use crate::protocol::{names, ALL_HEADERS};
use crate::store::s3::S3Store;

/// Connects the backends (migrations, bucket, queue topology) and binds.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let backends = settings.backends.connect().await?;
    let metrics = Metrics::new("upload-chunked");
    let store = Arc::new(S3Store::new(
        backends.storage.clone(),
        backends.pool.clone(),
        settings.tus.clone(),
    ));
    let board = ProgressBoard::new(backends.cache.clone());
    let videos = Videos::new(backends.pool.clone());
    let finisher = Finisher {
        store: store.clone(),
        videos: videos.clone(),
        publisher: backends.publisher.clone(),
        board: board.clone(),
    };
    let state = AppState {
        store,
        finisher,
        board,
        tus: settings.tus.clone(),
        metrics: TusMetrics::new(&metrics),
        budget: Budget::new(&settings.tus.budget, &metrics),
        events: shared::watch::Hub::new(settings.events.clone(), &metrics),
    };

    let uploads_limit = RateLimits::new(settings.rate_limits.clone(), &metrics).layer(Action::UploadCreate);
    let auth = settings.auth.authenticator(backends.pool.clone());
    let router = handlers::router(state.clone(), cors(&settings.tus)?, uploads_limit, auth);
    let app = with_operational_routes(router, backends.readiness(), metrics);
    let sweeper = tokio::spawn(crate::sweeper::run(state, settings.tus.sweep_every.0));
    let republisher = tokio::spawn(shared::videos::republish_stranded(
        videos,
        backends.publisher.clone(),
        settings.tus.republish_every.0,
        50,
    ));
    Ok(Server::new(
        settings.http.bind().await?,
        app,
        settings.http.shutdown_grace.0,
    )
    .with_task(sweeper)
    .with_task(republisher))
}

/// Browsers upload cross-origin: preflights are answered, and every tus
/// header is both allowed in and exposed out, or tus-js-client cannot read
/// Upload-Offset and Location.
fn cors(tus: &TusSettings) -> anyhow::Result<CorsLayer> {
    let origins = if tus.cors_origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        let list = tus
            .cors_origins
            .split(',')
            .map(|o| HeaderValue::from_str(o.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let mut allowed: Vec<HeaderName> = ALL_HEADERS.to_vec();
    allowed.extend([
        header::CONTENT_TYPE,
        header::AUTHORIZATION,
        HeaderName::from_static("x-requested-with"),
        HeaderName::from_static("traceparent"),
    ]);
    let mut exposed: Vec<HeaderName> = ALL_HEADERS.to_vec();
    exposed.extend([header::LOCATION, names::LINK]);
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::POST,
            Method::GET,
            Method::HEAD,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(allowed)
        .expose_headers(exposed)
        .max_age(std::time::Duration::from_secs(86400)))
}
