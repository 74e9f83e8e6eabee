//! The broker connection: connect, declare, run the intake of the configured
//! mode, and reconnect with backoff after an outage. On stop, jobs in flight
//! get the grace period to settle before the connection closes (which
//! returns any unsettled delivery to the queue).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use shared::queue::QueueSettings;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::configuration::Mode;
use crate::settle::Settler;
use crate::{pull, push};

/// How often push mode samples the queue depth (pull mode sees it on every get).
const DEPTH_EVERY: Duration = Duration::from_secs(5);

pub struct Consumer {
    pub queue: QueueSettings,
    pub settler: Settler,
    pub connected: Arc<AtomicBool>,
}

impl Consumer {
    pub async fn run(self: Arc<Self>, stop: CancellationToken, grace: Duration) {
        let tracker = TaskTracker::new();
        let mut backoff = Duration::from_millis(500);
        while !stop.is_cancelled() {
            match self.session(&stop, &tracker, grace).await {
                Ok(()) => break,
                Err(e) => {
                    self.connected.store(false, Ordering::Relaxed);
                    tracing::error!(error = format!("{e:#}"), ?backoff, "worker lost the broker; reconnecting");
                    tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        // Reached on a stop during a reconnect back-off: jobs started on the
        // lost connection cannot settle any more, so there is nothing to wait for.
        tracker.close();
    }

    async fn session(&self, stop: &CancellationToken, tracker: &TaskTracker, grace: Duration) -> anyhow::Result<()> {
        let conn = self.queue.connect().await?;
        let ch = conn.create_channel().await?;
        let topology = self.queue.names();
        topology.declare(&ch).await?;
        self.connected.store(true, Ordering::Relaxed);
        let sampler = (self.settler.intake.mode == Mode::Push).then(|| {
            let (ch, queue, gauge) = (ch.clone(), topology.jobs_queue.clone(), self.settler.metrics.queue_depth.clone());
            tokio::spawn(async move {
                loop {
                    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                    match ch.queue_declare(&queue, passive, FieldTable::default()).await {
                        Ok(q) => gauge.set(q.message_count() as i64),
                        Err(_) => return,
                    }
                    tokio::time::sleep(DEPTH_EVERY).await;
                }
            })
        });
        let tag = format!("{}-{}", self.settler.ctx.worker_id, uuid::Uuid::new_v4());
        let ran = match self.settler.intake.mode {
            Mode::Push => push::run(&ch, &topology.jobs_queue, &tag, &self.settler, stop, tracker).await,
            Mode::Pull => pull::run(&ch, &topology.jobs_queue, &self.settler, stop, tracker).await,
        };
        if let Some(s) = sampler {
            s.abort();
        }
        ran?;
        // Stopped: no new jobs; the ones in flight may still settle on this channel.
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("jobs still running at shutdown; the broker will redeliver them");
        }
        let _ = conn.close(200, "worker shutting down").await;
        Ok(())
    }
}
