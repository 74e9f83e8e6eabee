//! Per-client rate limits in the services, written once: session issuance
//! (origin), upload creation (both upload services), purges and HLS
//! requests (edges). The front doors limit too (NGINX `limit_req`, HAProxy
//! stick tables); these limits hold for whatever reaches a service some
//! other way (the secondary edge is public, Compose publishes ports).
//!
//! The algorithm is `governor`'s GCRA (a maintained crate; one atomic per
//! client, no timers). Its own keyed store grows until someone prunes it,
//! so clients live in a moka cache instead: bounded by
//! `RATE_LIMIT_MAX_CLIENTS`, and an entry idle for its full refill time
//! leaves (a full allowance is the same as no entry). Under a flood of
//! distinct addresses the least-used entries go first, which forgives those
//! clients early: memory stays bounded and the front doors still count.
//!
//! A refusal is 429 problem+json with `Retry-After`, counted per route in
//! `rate_limit_refusals_total`. `tower_governor` was not used: its address
//! extractors believe forwarding headers from any peer, and its refusal
//! body and metrics would need as much glue as this layer.

pub mod client;
pub mod rate;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{ready, Either, Ready};
use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::RateLimiter;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

pub use client::{Client, TrustedProxies};
pub use rate::Rate;

use crate::configuration::Env;
use crate::error::Problem;
use crate::metrics::Metrics;

/// What a limit protects; one variable and one metric label each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Master playlists and play URLs: each may mint a viewer session.
    SessionIssue,
    /// POST /api/v1/videos and tus creation.
    UploadCreate,
    /// An edge's POST /purge.
    Purge,
    /// An edge's /hls/ and /steering/ requests.
    EdgeObject,
}

impl Action {
    /// The `route` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            Action::SessionIssue => "sessions",
            Action::UploadCreate => "uploads",
            Action::Purge => "purge",
            Action::EdgeObject => "hls",
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Action::SessionIssue => "RATE_LIMIT_SESSIONS",
            Action::UploadCreate => "RATE_LIMIT_UPLOADS",
            Action::Purge => "RATE_LIMIT_PURGE",
            Action::EdgeObject => "RATE_LIMIT_HLS",
        }
    }

    fn default_rate(self) -> &'static str {
        match self {
            Action::SessionIssue => "2/s burst=20",
            Action::UploadCreate => "1/s burst=10",
            Action::Purge => "5/s burst=50",
            Action::EdgeObject => "200/s burst=400",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Action::SessionIssue => "master playlists and play URLs (session issuance) per client: N/s, N/m or N/h, optional burst=B, or off",
            Action::UploadCreate => "upload creations per client: N/s, N/m or N/h, optional burst=B, or off",
            Action::Purge => "purge requests per client: N/s, N/m or N/h, optional burst=B, or off",
            Action::EdgeObject => "HLS and steering requests per client at this edge: N/s, N/m or N/h, optional burst=B, or off",
        }
    }

    /// What the client did too often, for the refusal's detail.
    fn plural(self) -> &'static str {
        match self {
            Action::SessionIssue => "viewer sessions (master playlists or play URLs)",
            Action::UploadCreate => "upload creations",
            Action::Purge => "purge requests",
            Action::EdgeObject => "HLS requests",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RateLimitSettings {
    pub trusted_proxies: TrustedProxies,
    pub max_clients: u64,
    rates: Vec<(Action, Rate)>,
}

impl RateLimitSettings {
    /// The shared settings plus one rate per action this service limits.
    pub fn from_env(env: &mut Env, actions: &[Action]) -> Self {
        let s = Self {
            trusted_proxies: env.optional(
                "RATE_LIMIT_TRUSTED_PROXIES",
                "127.0.0.0/8,::1",
                "proxies (addresses or CIDR blocks) whose X-Forwarded-For names the client; a client that is itself one of them is never limited",
            ),
            max_clients: env.optional("RATE_LIMIT_MAX_CLIENTS", "100000", "clients tracked per limited route (bounds memory; the least used are forgotten first)"),
            rates: actions.iter().map(|&a| (a, env.optional(a.variable(), a.default_rate(), a.help()))).collect(),
        };
        if s.max_clients == 0 {
            env.invalid("RATE_LIMIT_MAX_CLIENTS must be at least 1");
        }
        s
    }

    /// An explicit rate (tests, benchmarks).
    pub fn with_rate(mut self, action: Action, rate: Rate) -> Self {
        self.rates.retain(|(a, _)| *a != action);
        self.rates.push((action, rate));
        self
    }

    pub fn rate(&self, action: Action) -> Rate {
        self.rates.iter().find(|(a, _)| *a == action).map_or(Rate::OFF, |(_, r)| *r)
    }
}

/// One service's limits: the settings and the metrics every route shares.
#[derive(Clone)]
pub struct RateLimits {
    settings: RateLimitSettings,
    refusals: IntCounterVec,
    clients: IntGaugeVec,
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings, metrics: &Metrics) -> Self {
        Self {
            settings,
            refusals: metrics.register(IntCounterVec::new(Opts::new("rate_limit_refusals_total", "Requests refused with 429 by a per-client rate limit"), &["route"]).expect("valid metric")),
            clients: metrics.register(IntGaugeVec::new(Opts::new("rate_limit_clients", "Clients a per-client rate limit is tracking"), &["route"]).expect("valid metric")),
        }
    }

    /// The layer for one action's routes (`route_layer` or `Handler::layer`).
    pub fn layer(&self, action: Action) -> RateLimit {
        let rate = self.settings.rate(action);
        let limiter = rate.quota().map(|quota| {
            let store: ClientStore = moka::sync::Cache::builder().max_capacity(self.settings.max_clients).time_to_idle(rate.refill().max(Duration::from_secs(1))).build();
            (RateLimiter::new(quota, Bounded(store.clone()), DefaultClock::default()), store)
        });
        RateLimit(Arc::new(Limiter {
            action,
            rate,
            trusted: self.settings.trusted_proxies.clone(),
            limiter,
            refusals: self.refusals.with_label_values(&[action.label()]),
            clients: self.clients.with_label_values(&[action.label()]),
        }))
    }
}

type ClientStore = moka::sync::Cache<Client, Arc<InMemoryState>>;

/// governor's per-client state in a bounded cache.
struct Bounded(ClientStore);

impl StateStore for Bounded {
    type Key = Client;

    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &Client, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.get_with(*key, Default::default).measure_and_replace(&NotKeyed::NonKey, f)
    }
}

struct Limiter {
    action: Action,
    rate: Rate,
    trusted: TrustedProxies,
    /// None when the rate is off. The store handle is moka's (cheap to
    /// clone), kept for its entry count.
    limiter: Option<(RateLimiter<Client, Bounded, DefaultClock>, ClientStore)>,
    refusals: IntCounter,
    clients: IntGauge,
}

/// A tower layer limiting one action per client. It also puts the
/// request's [`Client`] in its extensions, for handlers that key on it.
#[derive(Clone)]
pub struct RateLimit(Arc<Limiter>);

impl RateLimit {
    /// Ok, or how long this client must wait. `#[inline]` here and on the
    /// hot path below: the generic moka and governor code is then compiled
    /// in the calling service (edges are optimised in dev builds; `shared`
    /// is not), not at `shared`'s level.
    #[inline]
    pub fn check(&self, client: Client) -> Result<(), Duration> {
        let (Some((limiter, store)), Client::Addr(_)) = (&self.0.limiter, client) else { return Ok(()) };
        let verdict = limiter.check_key(&client).map_err(|not_until| not_until.wait_time_from(limiter.clock().now()));
        self.0.clients.set(store.entry_count() as i64);
        verdict.map(|_| ())
    }

    fn refusal(&self, wait: Duration) -> Response {
        self.0.refusals.inc();
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let l = &*self.0;
        let mut res = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("More {} from your address than the limit of {}. Retry after {secs} s.", l.action.plural(), l.rate),
        )
        .with("retry_after_seconds", secs)
        .with("limit", l.rate.to_string())
        .into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        res
    }
}

impl<S> tower::Layer<S> for RateLimit {
    type Service = Limited<S>;
    fn layer(&self, inner: S) -> Limited<S> {
        Limited { limit: self.clone(), inner }
    }
}

#[derive(Clone)]
pub struct Limited<S> {
    limit: RateLimit,
    inner: S,
}

impl<S> tower::Service<Request> for Limited<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let client = Client::of(&req, &self.limit.0.trusted);
        req.extensions_mut().insert(client);
        match self.limit.check(client) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(wait) => Either::Left(ready(Ok(self.limit.refusal(wait)))),
        }
    }
}

/// The client a [`RateLimit`] layer resolved; [`Client::Internal`] on a
/// route without one.
impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Client>().copied().unwrap_or(Client::Internal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use std::net::SocketAddr;
    use tower::ServiceExt;

    fn limits_at(rate: &str) -> (RateLimits, Metrics) {
        let metrics = Metrics::new("test");
        let settings = RateLimitSettings { trusted_proxies: "127.0.0.0/8".parse().unwrap(), max_clients: 100, rates: vec![] }.with_rate(Action::Purge, rate.parse().unwrap());
        (RateLimits::new(settings, &metrics), metrics)
    }

    fn app(limits: &RateLimits) -> Router {
        Router::new().route("/x", get(|c: Client| async move { c.key() }).route_layer(limits.layer(Action::Purge)))
    }

    fn from(peer: &str, forwarded: Option<&str>) -> axum::http::Request<Body> {
        let mut req = axum::http::Request::get("/x");
        if let Some(f) = forwarded {
            req = req.header("x-forwarded-for", f);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(format!("{peer}:40000").parse().unwrap()));
        req
    }

    #[tokio::test]
    async fn a_burst_above_the_rate_is_refused_with_retry_after_and_counted() {
        let (limits, metrics) = limits_at("1/m burst=3");
        let app = app(&limits);
        for _ in 0..3 {
            let r = app.clone().oneshot(from("203.0.113.1", None)).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(axum::body::to_bytes(r.into_body(), 100).await.unwrap(), "203.0.113.1", "handlers see the client");
        }
        let r = app.clone().oneshot(from("203.0.113.1", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::CONTENT_TYPE], crate::error::PROBLEM_JSON);
        let wait: u64 = r.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((59..=60).contains(&wait), "one request per minute, burst spent: the next slot is a minute away, got {wait}");
        let body: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!(body["code"], "rate-limited");
        assert_eq!(body["limit"], "1/m burst=3");
        // Another client, and one forwarded by a trusted proxy, have their own allowance.
        assert_eq!(app.clone().oneshot(from("203.0.113.2", None)).await.unwrap().status(), StatusCode::OK);
        assert_eq!(app.clone().oneshot(from("127.0.0.1", Some("198.51.100.1"))).await.unwrap().status(), StatusCode::OK);
        let text = metrics.render();
        assert!(text.contains("rate_limit_refusals_total{route=\"purge\",service=\"test\"} 1"), "{text}");
    }

    #[tokio::test]
    async fn the_platform_itself_and_an_off_rate_are_never_limited() {
        let (limits, _) = limits_at("1/h burst=1");
        let app = app(&limits);
        for _ in 0..5 {
            let r = app.clone().oneshot(from("127.0.0.1", None)).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let (off, _) = limits_at("off");
        let app = Router::new().route("/x", get(|| async { "ok" }).route_layer(off.layer(Action::Purge)));
        for _ in 0..5 {
            assert_eq!(app.clone().oneshot(from("203.0.113.1", None)).await.unwrap().status(), StatusCode::OK);
        }
    }

    #[test]
    fn memory_is_bounded_by_max_clients() {
        let metrics = Metrics::new("test");
        let settings = RateLimitSettings { trusted_proxies: TrustedProxies::default(), max_clients: 50, rates: vec![] }.with_rate(Action::Purge, "1/h burst=1".parse().unwrap());
        let limit = RateLimits::new(settings, &metrics).layer(Action::Purge);
        for i in 0..5000u32 {
            let _ = limit.check(Client::Addr(std::net::IpAddr::V4(i.into())));
        }
        let (_, store) = limit.0.limiter.as_ref().unwrap();
        store.run_pending_tasks();
        assert!(store.entry_count() <= 50, "{} clients tracked", store.entry_count());
    }
}
