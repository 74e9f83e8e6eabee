//! The AMQP side of the worker: consume with prefetch = concurrency, run
//! each delivery through [`JobContext::process`], and settle it.
//!
//! Settlement rules: ack only after the outputs are stored and the row says
//! `ready` (or the job is a no-op redelivery). Permanent failures are
//! rejected without requeue, which dead-letters them with the reason in the
//! row. Transient failures are republished with `attempt + 1` after a backoff
//! (then acked) until `max_attempts`, after which the video is marked failed
//! and the job dead-lettered. A worker that dies before settling leaves the
//! delivery unacked; the broker redelivers it to another consumer.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use shared::queue::{AmqpHeadersRef, Publisher, QueueSettings, TranscodeJob};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::job::{JobContext, JobError, Outcome};
use crate::startup::WorkerMetrics;

pub struct Consumer {
    pub queue: QueueSettings,
    pub ctx: JobContext,
    pub publisher: Arc<Publisher>,
    pub concurrency: u16,
    pub max_attempts: u32,
    pub metrics: WorkerMetrics,
    pub connected: Arc<std::sync::atomic::AtomicBool>,
}

impl Consumer {
    /// Consumes until `stop` is cancelled, reconnecting after broker outages;
    /// on stop, jobs in flight get up to `grace` to settle.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, grace: Duration) {
        let tracker = TaskTracker::new();
        let mut backoff = Duration::from_millis(500);
        while !stop.is_cancelled() {
            match self.consume(&stop, &tracker, grace).await {
                Ok(()) => break,
                Err(e) => {
                    self.connected.store(false, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(error = format!("{e:#}"), ?backoff, "consumer lost the broker; reconnecting");
                    tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        // Reached on a stop during a reconnect back-off: jobs started on the
        // lost connection cannot settle any more, so there is nothing to wait for.
        tracker.close();
    }

    async fn consume(&self, stop: &CancellationToken, tracker: &TaskTracker, grace: Duration) -> anyhow::Result<()> {
        let conn = self.queue.connect().await?;
        let ch = conn.create_channel().await?;
        let topology = self.queue.names();
        topology.declare(&ch).await?;
        ch.basic_qos(self.concurrency, BasicQosOptions::default()).await?;
        let tag = format!("{}-{}", self.ctx.worker_id, uuid::Uuid::new_v4());
        let mut deliveries = ch.basic_consume(&topology.jobs_queue, &tag, BasicConsumeOptions::default(), FieldTable::default()).await?;
        self.connected.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(queue = topology.jobs_queue, prefetch = self.concurrency, "consuming");
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    // No new deliveries; the ones in flight may still settle on
                    // this channel within the grace period. Closing the
                    // connection then returns any unsettled one to the queue.
                    let _ = ch.basic_cancel(&tag, BasicCancelOptions::default()).await;
                    tracker.close();
                    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
                        tracing::warn!("jobs still running at shutdown; the broker will redeliver them");
                    }
                    let _ = conn.close(200, "worker shutting down").await;
                    return Ok(());
                }
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        let me = self.clone_parts();
                        tracker.spawn(async move { me.handle(delivery).await });
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => anyhow::bail!("the broker closed the consumer"),
                }
            }
        }
    }

    fn clone_parts(&self) -> Handler {
        Handler { ctx: self.ctx.clone(), publisher: self.publisher.clone(), max_attempts: self.max_attempts, metrics: self.metrics.clone() }
    }
}

struct Handler {
    ctx: JobContext,
    publisher: Arc<Publisher>,
    max_attempts: u32,
    metrics: WorkerMetrics,
}

impl Handler {
    async fn handle(self, delivery: Delivery) {
        let job = match TranscodeJob::decode(&delivery.data) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "undecodable job message; dead-lettering it");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
        };
        let span = tracing::info_span!("transcode", video_id = %job.video_id, job_id = %job.job_id, attempt = job.attempt);
        if let Some(headers) = delivery.properties.headers() {
            shared::telemetry::adopt_parent(&span, &AmqpHeadersRef(headers));
        }
        self.settle(delivery, job).instrument(span).await
    }

    async fn settle(self, delivery: Delivery, job: TranscodeJob) {
        self.metrics.in_flight.inc();
        let timer = self.metrics.duration.start_timer();
        let result = self.ctx.process(&job).await;
        timer.observe_duration();
        self.metrics.in_flight.dec();
        let settled = match result {
            Ok(outcome) => {
                self.metrics.jobs.with_label_values(&[if outcome == Outcome::Ready { "ready" } else { "skipped" }]).inc();
                delivery.ack(BasicAckOptions::default()).await
            }
            Err(JobError::Permanent(reason)) => {
                tracing::warn!(reason, "input cannot be transcoded; dead-lettering");
                self.metrics.jobs.with_label_values(&["failed_permanent"]).inc();
                delivery.reject(BasicRejectOptions { requeue: false }).await
            }
            Err(JobError::Transient(e)) => self.retry_or_give_up(&delivery, job, e).await,
        };
        if let Err(e) = settled {
            // The broker will redeliver; the next attempt sees the row state.
            tracing::error!(error = format!("{e:#}"), "could not settle delivery");
        }
    }

    async fn retry_or_give_up(&self, delivery: &Delivery, job: TranscodeJob, e: anyhow::Error) -> lapin::Result<()> {
        let reason = format!("{e:#}");
        if job.attempt >= self.max_attempts {
            tracing::error!(reason, attempts = job.attempt, "giving up");
            self.metrics.jobs.with_label_values(&["failed_exhausted"]).inc();
            if let Err(e) = self.ctx.videos.give_up(job.video_id, &format!("gave up after {} attempts: {reason}", job.attempt)).await {
                tracing::error!(error = format!("{e:#}"), "could not mark the video failed");
            }
            return delivery.reject(BasicRejectOptions { requeue: false }).await;
        }
        let backoff = Duration::from_secs(2u64.pow(job.attempt.min(5)));
        tracing::warn!(reason, ?backoff, "transient failure; retrying");
        self.metrics.jobs.with_label_values(&["retried"]).inc();
        tokio::time::sleep(backoff).await;
        let next = TranscodeJob { attempt: job.attempt + 1, ..job };
        match self.publisher.publish(&next).await {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
            // Could not republish: leave it to the broker to redeliver as is.
            Err(_) => delivery.reject(BasicRejectOptions { requeue: true }).await,
        }
    }
}
