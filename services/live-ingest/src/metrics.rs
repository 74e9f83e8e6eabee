//! live-ingest's own series, beside the HTTP ones every service has.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use shared::metrics::Metrics;

#[derive(Clone)]
pub struct LiveMetrics {
    pub publishers: IntGauge,
    pub refusals: IntCounterVec,
    pub ingest_bytes: IntCounter,
    pub encoder_restarts: IntCounter,
    pub parts: IntCounter,
    pub blocking_requests: IntCounter,
    pub blocking_timeouts: IntCounter,
    pub dvr_bytes: IntCounter,
    pub dvr_dropped: IntCounter,
    pub replays: IntCounterVec,
}

impl LiveMetrics {
    pub fn register(m: &Metrics) -> Self {
        Self {
            publishers: m.register(IntGauge::new("live_publishers", "RTMP publishers on air now").unwrap()),
            refusals: m.register(IntCounterVec::new(Opts::new("live_publish_refusals_total", "Publishers refused or dropped, by reason"), &["reason"]).unwrap()),
            ingest_bytes: m.register(IntCounter::new("live_ingest_bytes_total", "Media bytes received from publishers").unwrap()),
            encoder_restarts: m.register(IntCounter::new("live_encoder_restarts_total", "Live encoders restarted after dying or being stopped for a timestamp jump").unwrap()),
            parts: m.register(IntCounter::new("live_parts_total", "Encoder output chunks packaged (all renditions)").unwrap()),
            blocking_requests: m.register(IntCounter::new("live_blocking_requests_total", "Blocking playlist requests (_HLS_msn) answered or timed out").unwrap()),
            blocking_timeouts: m.register(IntCounter::new("live_blocking_timeouts_total", "Blocking playlist requests answered 503 after three target durations").unwrap()),
            dvr_bytes: m.register(IntCounter::new("live_dvr_bytes_total", "Bytes of segments and init segments recorded to S3").unwrap()),
            dvr_dropped: m.register(IntCounter::new("live_dvr_dropped_total", "Objects missing from recordings (S3 failed or fell too far behind)").unwrap()),
            replays: m.register(IntCounterVec::new(Opts::new("live_replays_total", "Replays handed to the catalogue, by outcome"), &["outcome"]).unwrap()),
        }
    }
}
