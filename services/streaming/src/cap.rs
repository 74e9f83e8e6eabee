//! Server-side bitrate adaptation: the origin measures its own egress and
//! the platform's live viewers every interval; above a threshold, new
//! sessions get master playlists without their top rungs, until both
//! figures fall under the lower thresholds (hysteresis, so the cap does not
//! flap at the boundary). Sessions keep what they were issued with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shared::sessions::{Heartbeats, Live, Sessions};

use crate::configuration::CapSettings;
use crate::metrics::OriginMetrics;

pub struct BitrateCap {
    settings: CapSettings,
    active: AtomicBool,
}

impl BitrateCap {
    pub fn new(settings: CapSettings) -> Self {
        Self { settings, active: AtomicBool::new(false) }
    }

    /// Rungs a session issued now loses.
    pub fn rungs_to_drop(&self) -> usize {
        if self.active.load(Ordering::Relaxed) {
            self.settings.drop_rungs
        } else {
            0
        }
    }

    /// The next state from the current one and a measurement.
    pub fn next_state(&self, active: bool, egress_per_sec: u64, viewers: u64) -> bool {
        let s = &self.settings;
        let over = (s.egress_above.0 > 0 && egress_per_sec > s.egress_above.0) || (s.viewers_above > 0 && viewers > s.viewers_above);
        let under = (s.egress_above.0 == 0 || egress_per_sec < s.egress_below.0) && (s.viewers_above == 0 || viewers < s.viewers_below);
        if active {
            !under
        } else {
            over
        }
    }

    /// Measures every interval until the server stops.
    pub fn spawn(self: Arc<Self>, sessions: Sessions, heartbeats: Heartbeats, metrics: OriginMetrics) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.settings.interval.0);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut last_bytes, mut last_at) = (metrics.egress_bytes.get(), Instant::now());
            loop {
                tick.tick().await;
                let (bytes, at) = (metrics.egress_bytes.get(), Instant::now());
                let rate = ((bytes - last_bytes) as f64 / at.duration_since(last_at).as_secs_f64().max(1e-3)) as u64;
                (last_bytes, last_at) = (bytes, at);
                // Without Redis the viewer figure is unknown: keep the last
                // state for it rather than lift or impose a cap blindly.
                let viewers = match sessions.live(&[Live::All]).await {
                    Ok(n) => n[0],
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "live viewer count unavailable");
                        metrics.viewers_live.get().max(0) as u64
                    }
                };
                metrics.egress_rate.set(rate as f64);
                metrics.viewers_live.set(viewers as i64);
                metrics.viewers_here.set(heartbeats.live_here() as i64);
                let was = self.active.load(Ordering::Relaxed);
                let now = self.next_state(was, rate, viewers);
                if now != was {
                    tracing::info!(active = now, egress_per_sec = rate, viewers, "bitrate cap {}", if now { "engaged" } else { "released" });
                    self.active.store(now, Ordering::Relaxed);
                }
                metrics.cap_active.set(now as i64);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::configuration::ByteSize;

    fn cap(egress: (u64, u64), viewers: (u64, u64)) -> BitrateCap {
        BitrateCap::new(CapSettings {
            egress_above: ByteSize(egress.0),
            egress_below: ByteSize(egress.1),
            viewers_above: viewers.0,
            viewers_below: viewers.1,
            drop_rungs: 1,
            interval: Default::default(),
        })
    }

    #[test]
    fn the_cap_engages_above_and_lifts_only_below_the_lower_threshold() {
        let c = cap((0, 0), (10, 5));
        assert!(!c.next_state(false, u64::MAX, 10));
        assert!(c.next_state(false, 0, 11));
        assert!(c.next_state(true, 0, 7), "between the thresholds it stays on");
        assert!(!c.next_state(true, 0, 4));
        assert!(!c.next_state(false, 0, 7), "between the thresholds it stays off");
    }

    #[test]
    fn either_figure_engages_and_both_must_fall_to_lift() {
        let c = cap((1000, 500), (10, 5));
        assert!(c.next_state(false, 1001, 0));
        assert!(c.next_state(true, 100, 8), "viewers still above their lower threshold");
        assert!(!c.next_state(true, 100, 4));
        assert!(!cap((0, 0), (0, 0)).next_state(false, u64::MAX, u64::MAX), "all thresholds off: never");
    }
}
