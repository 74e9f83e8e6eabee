//! Builds upload-chunked.

use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use shared::error::Problem;
use shared::metrics::Metrics;
use shared::server::{with_operational_routes, Server};

use crate::configuration::Settings;

async fn not_yet() -> Problem {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "tus-not-implemented",
        "Resumable uploads are not available yet",
        "This deployment does not accept tus uploads yet. Upload with POST /api/v1/videos instead.",
    )
}

/// Connects the backends (migrations, bucket, queue topology) and binds.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    let readiness = settings.backends.connect().await?.readiness();
    let router = Router::new().route("/api/v1/uploads", any(not_yet)).route("/api/v1/uploads/{*rest}", any(not_yet));
    let app = with_operational_routes(router, readiness, Metrics::new("upload-chunked"));
    Ok(Server::new(settings.http.bind().await?, app, settings.http.shutdown_grace.0))
}
