//! The one HTTP server wrapper every service runs in: health and metrics
//! routes, a span per request (child of the caller's `traceparent`), request
//! metrics, 4xx/5xx logging, lingering reads of refused bodies (`linger`),
//! and graceful shutdown.
//!
//! Serves HTTP/1.1 and HTTP/2 on the same port (h2c by prior knowledge), so
//! NGINX and HAProxy can use either to reach a service.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::configuration::{Env, Seconds};
use crate::health::Readiness;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    pub addr: String,
    pub shutdown_grace: Seconds,
}

impl HttpSettings {
    pub fn from_env(env: &mut Env, default_addr: &str) -> Self {
        Self {
            addr: env.optional("HTTP_ADDR", default_addr, "listen address, host:port (port 0 picks a free one)"),
            shutdown_grace: env.optional("SHUTDOWN_GRACE", "30s", "how long in-flight requests may finish after SIGTERM"),
        }
    }

    pub async fn bind(&self) -> anyhow::Result<TcpListener> {
        TcpListener::bind(&self.addr).await.map_err(|e| anyhow::anyhow!("cannot listen on HTTP_ADDR={}: {e}", self.addr))
    }
}

/// Adds /health/live, /health/ready, /metrics and the per-request layers.
pub fn with_operational_routes(app: Router, readiness: Readiness, metrics: Metrics) -> Router {
    let ready = readiness.clone();
    let m = metrics.clone();
    app.route("/health/live", get(|| async { "live" }))
        .route("/health/ready", get(move || { let r = ready.clone(); async move { r.respond().await } }))
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .fallback(crate::error::not_found)
        .layer(axum::middleware::from_fn(crate::linger::linger))
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
}

/// Span, metrics and logging around every request.
async fn observe(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let span = tracing::info_span!("http", %method, route, path = %req.uri().path(), status = tracing::field::Empty);
    crate::telemetry::adopt_parent(&span, &crate::telemetry::HeaderExtractor(req.headers()));
    let started = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status();
    let elapsed = started.elapsed();
    span.record("status", status.as_u16());
    metrics.http_requests.with_label_values(&[method.as_str(), &route, status.as_str()]).inc();
    metrics.http_duration.with_label_values(&[method.as_str(), &route]).observe(elapsed.as_secs_f64());
    let _enter = span.enter();
    let ms = elapsed.as_millis() as u64;
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), ms, "request failed");
    } else if status.is_client_error() {
        tracing::info!(status = status.as_u16(), ms, "request refused");
    } else if route != "/health/ready" && route != "/health/live" && route != "/metrics" {
        tracing::debug!(status = status.as_u16(), ms, "request served");
    }
    res
}

/// A bound listener plus the router it will serve: `build` reports the real
/// port before `run_until_stopped` serves, so tests can bind port 0.
pub struct Server {
    listener: TcpListener,
    router: Router,
    grace: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn new(listener: TcpListener, router: Router, grace: Duration) -> Self {
        Self { listener, router, grace, tasks: Vec::new() }
    }

    /// A background task that lives exactly as long as the server.
    pub fn with_task(mut self, task: tokio::task::JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish for
    /// at most the grace period, then stops the background tasks.
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let tasks = std::mem::take(&mut self.tasks);
        let res = self.serve(shutdown).await;
        for t in tasks {
            t.abort();
        }
        res
    }

    async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let grace = self.grace;
        // The peer address is what `ratelimit::Client` starts from.
        let serve = axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = tx.send(());
            });
        tokio::select! {
            res = serve => res,
            _ = async { let _ = rx.await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "grace period over; dropping remaining connections");
                Ok(())
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}

/// Standard `main` preamble: `--list-env` prints the variables and exits;
/// otherwise the environment is read and every problem reported at once.
pub fn load_settings<S>(build: impl Fn(&mut Env) -> S) -> anyhow::Result<Option<S>> {
    return_large_buffers_to_the_os();
    if std::env::args().any(|a| a == "--list-env") {
        let mut env = Env::listing();
        build(&mut env);
        crate::configuration::print_specs(&env.finish()?);
        return Ok(None);
    }
    let mut env = Env::from_process();
    let settings = build(&mut env);
    env.finish()?;
    Ok(Some(settings))
}

/// glibc raises its mmap threshold each time a large block is freed, after
/// which 8 MiB upload parts come from the heap and their pages stay with the
/// process: measured, a 1 GiB upload then grew RSS by 81 MiB instead of the
/// ~32 MiB of parts actually in use (scripts/bench). Pinning the threshold at
/// 1 MiB keeps every part an mmap that is returned to the OS when freed.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
