//! Liveness and readiness.
//!
//! Live means the process answers. Ready means every dependency answered a
//! cheap probe within a deadline; otherwise 503 names each one that failed,
//! so an operator (or HAProxy's health check log) sees *which* is down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::Problem;

type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

/// The named dependency probes of one service.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<(&'static str, Probe)>,
}

/// A probe slower than this counts as failed: readiness must answer quickly
/// even when a dependency hangs rather than refuses.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with<F, Fut>(mut self, name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.probes.push((name, Arc::new(move || Box::pin(probe()))));
        self
    }

    /// PostgreSQL answers a trivial query.
    pub fn postgres(self, pool: sqlx::PgPool) -> Self {
        self.with("postgres", move || {
            let pool = pool.clone();
            async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(Into::into) }
        })
    }

    /// The bucket is reachable with our credentials.
    pub fn s3(self, storage: crate::storage::Storage) -> Self {
        self.with("s3", move || {
            let s = storage.clone();
            async move { s.ping().await }
        })
    }

    pub fn redis(self, cache: crate::cache::Cache) -> Self {
        self.with("redis", move || {
            let c = cache.clone();
            async move { c.ping().await }
        })
    }

    /// The publisher has (or can open) a confirmed channel.
    pub fn rabbitmq(self, publisher: Arc<crate::queue::Publisher>) -> Self {
        self.with("rabbitmq", move || {
            let p = publisher.clone();
            async move { p.channel().await.map(|_| ()) }
        })
    }

    /// Runs every probe concurrently; returns the failures.
    pub async fn failures(&self) -> Vec<(&'static str, String)> {
        let runs = self.probes.iter().map(|(name, probe)| async move {
            match tokio::time::timeout(PROBE_DEADLINE, probe()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((*name, format!("{e:#}"))),
                Err(_) => Some((*name, format!("no answer within {PROBE_DEADLINE:?}"))),
            }
        });
        futures::future::join_all(runs).await.into_iter().flatten().collect()
    }

    pub async fn respond(&self) -> Response {
        let failures = self.failures().await;
        if failures.is_empty() {
            let names: Vec<_> = self.probes.iter().map(|(n, _)| *n).collect();
            return (StatusCode::OK, Json(serde_json::json!({"status": "ready", "checked": names}))).into_response();
        }
        let names: Vec<_> = failures.iter().map(|(n, _)| *n).collect();
        let detail = failures.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; ");
        tracing::warn!(%detail, "not ready");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", format!("unavailable: {detail}"))
            .with("failed", names)
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_the_failing_dependency() {
        let r = Readiness::new()
            .with("postgres", || async { Ok(()) })
            .with("s3", || async { anyhow::bail!("connection refused") });
        let res = r.respond().await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["failed"], serde_json::json!(["s3"]));
        assert!(v["detail"].as_str().unwrap().contains("s3: connection refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_dependency_fails_at_the_deadline() {
        let r = Readiness::new().with("redis", futures::future::pending);
        let failures = r.failures().await;
        assert_eq!(failures[0].0, "redis");
        assert!(failures[0].1.contains("no answer"));
    }
}
