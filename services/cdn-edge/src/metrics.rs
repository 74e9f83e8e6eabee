//! The edge's series, beside the HTTP ones every service has. Every series
//! carries the edge's `region` and `node` as constant labels.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts};
use shared::metrics::Metrics;

#[derive(Clone)]
pub struct EdgeMetrics {
    pub requests: IntCounterVec,
    pub ttfb: HistogramVec,
    pub bytes_served: IntCounter,
    pub origin_fetches: IntCounter,
    pub purges: IntCounter,
    pub memory_bytes: IntGauge,
    pub disk_bytes: IntGauge,
    pub viewers_live: IntGauge,
    pub negative_hits: IntCounter,
    pub negative_bytes: IntGauge,
    pub flight_bytes: IntGauge,
    pub flight_spills: IntCounter,
    pub token_refusals: IntCounterVec,
}

impl EdgeMetrics {
    pub fn register(m: &Metrics) -> Self {
        Self {
            requests: m.register(IntCounterVec::new(Opts::new("edge_requests_total", "Viewer requests by cache outcome (hit, miss, stale, pass)"), &["cache"]).unwrap()),
            ttfb: m.register(
                HistogramVec::new(
                    HistogramOpts::new("edge_ttfb_seconds", "Time to the response head, by cache outcome")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
                    &["cache"],
                )
                .unwrap(),
            ),
            bytes_served: m.register(IntCounter::new("edge_bytes_served_total", "Body bytes sent to viewers (before gzip)").unwrap()),
            origin_fetches: m.register(IntCounter::new("edge_origin_fetches_total", "Requests sent to the origin (or parent edge)").unwrap()),
            purges: m.register(IntCounter::new("edge_purges_total", "Purge messages applied").unwrap()),
            memory_bytes: m.register(IntGauge::new("edge_memory_cache_bytes", "Bytes held by the memory tier").unwrap()),
            disk_bytes: m.register(IntGauge::new("edge_disk_cache_bytes", "Bytes held by the disk tier").unwrap()),
            viewers_live: m.register(IntGauge::new("edge_viewers_live", "Viewer sessions that fetched from this edge within the session TTL").unwrap()),
            negative_hits: m.register(IntCounter::new("edge_negative_hits_total", "404s answered from the negative cache, without an origin fetch").unwrap()),
            negative_bytes: m.register(IntGauge::new("edge_negative_cache_bytes", "Bytes held by remembered 404s").unwrap()),
            flight_bytes: m.register(IntGauge::new("edge_flight_bytes", "Bytes reserved by in-flight coalesced fetches (EDGE_FLIGHT_BYTES is the limit)").unwrap()),
            flight_spills: m.register(IntCounter::new("edge_flight_spills_total", "Fetches that would have passed EDGE_FLIGHT_BYTES and were passed through unbuffered").unwrap()),
            token_refusals: m.register(IntCounterVec::new(Opts::new("edge_playback_token_refusals_total", "Requests for objects of unlisted or private videos refused for their playback token, by reason"), &["reason"]).unwrap()),
        }
    }
}
