//! Builds upload-http2: clients, migrations, topology, router, background
//! republisher. `build` binds the listener so tests can use port 0 and ask
//! for the real port before serving.


use shared::metrics::Metrics;
use shared::ratelimit::{Action, RateLimits};
use shared::reconcile::Reconciler;
use shared::server::{with_operational_routes, Server};
use shared::videos::{republish_stranded, Videos};

use crate::configuration::Settings;
use crate::routes::{router, AppState, UploadMetrics};

pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let backends = settings.backends.connect().await?;
    let videos = Videos::new(backends.pool.clone());
    let metrics = Metrics::new("upload-http2");
    tracing::info!(buffer_bytes = settings.upload.buffer_bytes(), "worst-case buffer per upload");

    let readiness = backends.readiness();
    let publisher = backends.publisher.clone();
    let state = AppState {
        videos: videos.clone(),
        publisher: backends.publisher,
        storage: backends.storage,
        cache: backends.cache,
        upload: settings.upload.clone(),
        metrics: UploadMetrics::new(&metrics),
        budget: shared::budget::Budget::new(&settings.upload.budget, &metrics),
        events: shared::watch::Hub::new(settings.events.clone(), &metrics),
    };
    let rc = &settings.upload.reconcile;
    let reconciler = Reconciler::new(backends.pool.clone(), state.storage.clone(), rc.grace.0, &metrics);
    let uploads_limit = RateLimits::new(settings.rate_limits.clone(), &metrics).layer(Action::UploadCreate);
    let auth = settings.auth.authenticator(backends.pool.clone());
    settings.bootstrap.apply(auth.keys()).await?;
    // Every API route is behind the key layer; the operational routes
    // (health, metrics) are not.
    let api = router(state, uploads_limit).merge(shared::auth::routes::router(auth.clone())).layer(axum::middleware::from_fn_with_state(auth, shared::auth::authenticate));
    let app = with_operational_routes(api, readiness, metrics);
    let server = Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0);
    Ok(server
        .with_task(tokio::spawn(republish_stranded(videos, publisher, settings.upload.republish_every.0, 100)))
        .with_task(tokio::spawn(reconciler.run(rc.every.0, rc.lifecycle_days))))
}
