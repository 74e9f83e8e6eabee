//! Prometheus metrics: one registry per service instance (not a global, so
//! several apps in one test process do not share counters), and the HTTP
//! metrics every service gets from the server wrapper.
//!
//! The one exception is [`PANICS`]: a panic belongs to the process, not to
//! one app in it, so every registry shows the same process-wide counter.

use std::sync::LazyLock;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

/// Panics in this process, counted by the hook that
/// [`crate::telemetry::install_panic_hook`] installs.
pub static PANICS: LazyLock<IntCounter> =
    LazyLock::new(|| IntCounter::new("panics_total", "Panics in this process (each is also logged with its location)").expect("valid metric"));

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        Self::with_labels(service, &[])
    }

    /// Constant labels on every series besides `service` (an edge's region and node).
    pub fn with_labels(service: &str, labels: &[(&str, &str)]) -> Self {
        let mut all: std::collections::HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.insert("service".to_owned(), service.to_owned());
        let registry = Registry::new_custom(None, Some(all)).expect("valid registry");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to response headers")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0]),
            &["method", "route"],
        )
        .expect("valid metric");
        registry.register(Box::new(http_requests.clone())).expect("unique metric");
        registry.register(Box::new(http_duration.clone())).expect("unique metric");
        registry.register(Box::new(PANICS.clone())).expect("unique metric");
        Self { registry, http_requests, http_duration }
    }

    /// Registers a service-specific collector in the same registry.
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.registry.register(Box::new(c.clone())).expect("metric registered twice");
        c
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }
}
