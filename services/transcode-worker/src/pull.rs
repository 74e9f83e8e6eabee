//! Pull mode: `basic.get` polling. A free slot polls at once while jobs keep
//! coming; each empty poll doubles the wait (WORKER_POLL_MIN up to
//! WORKER_POLL_MAX), so an idle worker costs a poll every couple of seconds
//! and a busy one never sleeps between jobs.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::Channel;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settle::Settler;

/// The next wait after an empty poll.
pub fn back_off(current: Duration, min: Duration, max: Duration) -> Duration {
    (current * 2).clamp(min, max)
}

pub async fn run(ch: &Channel, queue: &str, settler: &Settler, stop: &CancellationToken, tracker: &TaskTracker) -> anyhow::Result<()> {
    let intake = &settler.intake;
    let slots = Arc::new(Semaphore::new(intake.concurrency as usize));
    let mut idle = Duration::ZERO;
    tracing::info!(queue, concurrency = intake.concurrency, "polling (pull)");
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        match ch.basic_get(queue, BasicGetOptions { no_ack: false }).await? {
            Some(msg) => {
                settler.metrics.queue_depth.set(msg.message_count as i64);
                idle = Duration::ZERO;
                let settler = settler.clone();
                tracker.spawn(async move {
                    settler.handle(msg.delivery).await;
                    drop(slot);
                });
            }
            None => {
                drop(slot);
                settler.metrics.queue_depth.set(0);
                idle = back_off(idle, intake.poll_min, intake.poll_max);
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_polls_back_off_to_the_ceiling_and_start_at_the_floor() {
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(2));
        let mut d = Duration::ZERO;
        let mut seen = vec![];
        for _ in 0..8 {
            d = back_off(d, min, max);
            seen.push(d.as_millis());
        }
        assert_eq!(seen, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
