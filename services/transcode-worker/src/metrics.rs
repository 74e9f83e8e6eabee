//! The worker's metrics. Every series carries the intake mode, so push and
//! pull workers on one queue can be compared side by side.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use shared::metrics::Metrics;

use crate::configuration::Mode;

#[derive(Clone)]
pub struct WorkerMetrics {
    jobs: IntCounterVec,
    failures: IntCounterVec,
    pub queue_depth: IntGauge,
    pub in_flight: IntGauge,
    /// Enqueue (or the end of a retry delay) → a worker starts the job.
    pub wait: Histogram,
    /// Start → settlement.
    pub duration: Histogram,
    /// Media seconds per wall-clock second of the whole job.
    pub speed: Histogram,
}

const TIME_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0];

impl WorkerMetrics {
    pub fn new(m: &Metrics, mode: Mode) -> Self {
        let mode = mode.as_str();
        let with_mode = |o: Opts| o.const_label("mode", mode);
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            m.register(Histogram::with_opts(HistogramOpts::new(name, help).const_label("mode", mode).buckets(buckets.to_vec())).unwrap())
        };
        Self {
            jobs: m.register(IntCounterVec::new(with_mode(Opts::new("transcode_jobs_total", "Settled jobs by outcome")), &["outcome"]).unwrap()),
            failures: m.register(IntCounterVec::new(with_mode(Opts::new("transcode_failures_total", "Failed attempts by reason")), &["reason"]).unwrap()),
            queue_depth: m.register(IntGauge::with_opts(with_mode(Opts::new("transcode_queue_depth", "Jobs waiting in the queue, as last seen"))).unwrap()),
            in_flight: m.register(IntGauge::with_opts(with_mode(Opts::new("transcode_jobs_in_flight", "Jobs running now"))).unwrap()),
            wait: hist("transcode_job_wait_seconds", "Time from enqueue to job start", TIME_BUCKETS),
            duration: hist("transcode_job_duration_seconds", "Time from job start to settlement", TIME_BUCKETS),
            speed: hist("transcode_speed_ratio", "Media seconds transcoded per wall-clock second", &[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        }
    }

    /// `transcode_jobs_total{outcome}`: ready, skipped, cancelled, superseded,
    /// retried, dead_permanent, dead_exhausted, undecodable.
    pub fn job(&self, outcome: &str) {
        self.jobs.with_label_values(&[outcome]).inc();
    }

    /// `transcode_failures_total{reason}`: one per failed attempt; reasons are
    /// [`crate::job::JobError::reason`].
    pub fn failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}
