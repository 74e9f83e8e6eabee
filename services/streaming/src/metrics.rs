//! The origin's own series, beside the HTTP ones every service has.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use shared::metrics::Metrics;

#[derive(Clone)]
pub struct OriginMetrics {
    pub egress_bytes: IntCounter,
    pub egress_rate: Gauge,
    pub viewers_live: IntGauge,
    pub viewers_here: IntGauge,
    pub sessions_issued: IntCounter,
    pub sessions_reused: IntCounter,
    pub cap_active: IntGauge,
    pub capped_sessions: IntCounter,
    pub steering_active: IntGaugeVec,
    pub steering_answers: IntCounterVec,
    pub catalogue_lookups: IntCounter,
    pub negative_hits: IntCounter,
    pub token_refusals: IntCounterVec,
}

impl OriginMetrics {
    pub fn register(m: &Metrics) -> Self {
        Self {
            egress_bytes: m.register(IntCounter::new("origin_egress_bytes_total", "Body bytes the origin sent").unwrap()),
            egress_rate: m.register(Gauge::new("origin_egress_bytes_per_second", "Egress over the last measuring interval").unwrap()),
            viewers_live: m.register(IntGauge::new("origin_viewers_live", "Live viewer sessions on the platform").unwrap()),
            viewers_here: m.register(IntGauge::new("origin_viewers_here", "Live sessions that fetched from this origin directly").unwrap()),
            sessions_issued: m.register(IntCounter::new("origin_sessions_issued_total", "Viewer sessions issued (views)").unwrap()),
            sessions_reused: m.register(IntCounter::new("origin_sessions_reused_total", "Session requests answered with the client's session for the video (no new view)").unwrap()),
            cap_active: m.register(IntGauge::new("origin_bitrate_cap_active", "1 while new sessions get master playlists without their top rungs").unwrap()),
            capped_sessions: m.register(IntCounter::new("origin_capped_sessions_total", "Sessions issued while the bitrate cap was on").unwrap()),
            steering_active: m.register(IntGaugeVec::new(Opts::new("steering_secondary_active", "1 while a region's secondary pathway takes viewers"), &["region"]).unwrap()),
            catalogue_lookups: m.register(IntCounter::new("origin_catalogue_lookups_total", "Catalogue (PostgreSQL) queries for whether a video is served").unwrap()),
            negative_hits: m.register(IntCounter::new("origin_negative_hits_total", "Requests for an unknown video answered 404 from memory, without a catalogue query").unwrap()),
            token_refusals: m.register(IntCounterVec::new(Opts::new("playback_token_refusals_total", "Requests for objects of unlisted or private videos refused for their playback token, by reason"), &["reason"]).unwrap()),
            steering_answers: m.register(IntCounterVec::new(Opts::new("steering_answers_total", "Steering answers by the pathway put first"), &["pathway"]).unwrap()),
        }
    }
}
