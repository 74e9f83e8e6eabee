//! One delivery, whichever mode brought it: decode, run the job, settle.
//!
//! Settlement rules, in the order that keeps a job from being lost:
//! - done (ready, skipped, cancelled, superseded): ack.
//! - transient failure with attempts left: publish the next attempt to the
//!   delay queue for its backoff (confirmed), then ack. If that publish
//!   fails, nack with requeue so the broker hands the job out again.
//! - permanent failure, or the last attempt failed: publish it to the dead
//!   queue with its error (confirmed), then mark the video failed, then ack.
//! - undecodable message (or a dead job that cannot be published): reject
//!   without requeue, and the queue's own dead-lettering moves it.
//!
//! A worker that dies before settling leaves the delivery unacked, and the
//! broker redelivers it to another worker.

use std::sync::Arc;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use shared::queue::{AmqpHeadersRef, DeadReason, Publisher, TranscodeJob};
use tracing::Instrument;

use crate::configuration::IntakeSettings;
use crate::job::{JobContext, JobError, Outcome};
use crate::metrics::WorkerMetrics;

#[derive(Clone)]
pub struct Settler {
    pub ctx: JobContext,
    pub publisher: Arc<Publisher>,
    pub intake: IntakeSettings,
    pub metrics: WorkerMetrics,
}

impl Settler {
    pub async fn handle(self, delivery: Delivery) {
        let job = match TranscodeJob::decode(&delivery.data) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "undecodable job message; dead-lettering it");
                self.metrics.job("undecodable");
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
        let waited = (time::OffsetDateTime::now_utc() - job.enqueued_at).as_seconds_f64().max(0.0);
        self.metrics.wait.observe(waited);
        self.metrics.in_flight.inc();
        let started = std::time::Instant::now();
        let result = self.ctx.process(&job).await;
        let took = started.elapsed().as_secs_f64();
        self.metrics.duration.observe(took);
        self.metrics.in_flight.dec();
        let settled = match result {
            Ok(outcome) => {
                let label = match outcome {
                    Outcome::Ready { media_seconds } => {
                        self.metrics.speed.observe(media_seconds / took.max(0.001));
                        "ready"
                    }
                    Outcome::Skipped => "skipped",
                    Outcome::Cancelled => "cancelled",
                    Outcome::Superseded => "superseded",
                };
                self.metrics.job(label);
                delivery.ack(BasicAckOptions::default()).await.map_err(anyhow::Error::from)
            }
            Err(e) => {
                self.metrics.failure(e.reason());
                self.failed(&delivery, job, e).await
            }
        };
        if let Err(e) = settled {
            // The broker will redeliver; the next attempt sees the row state.
            tracing::error!(error = format!("{e:#}"), "could not settle delivery");
        }
    }

    async fn failed(&self, delivery: &Delivery, job: TranscodeJob, e: JobError) -> anyhow::Result<()> {
        let reason = e.to_string();
        let dead = match &e {
            JobError::Permanent(_) => Some(DeadReason::Permanent),
            JobError::Transient(..) if job.attempt >= self.intake.max_attempts => Some(DeadReason::Exhausted),
            JobError::Transient(..) => None,
        };
        let Some(why) = dead else {
            let delay = self.intake.retry_delay(job.attempt);
            tracing::warn!(reason, ?delay, "transient failure; retrying");
            return match self.publisher.publish_retry(&job.retry(reason, delay), delay).await {
                Ok(()) => {
                    self.metrics.job("retried");
                    Ok(delivery.ack(BasicAckOptions::default()).await?)
                }
                Err(publish) => {
                    tracing::error!(error = format!("{publish:#}"), "could not schedule the retry; returning the job to the queue");
                    tokio::time::sleep(delay.min(std::time::Duration::from_secs(5))).await;
                    Ok(delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?)
                }
            };
        };
        let message = match why {
            DeadReason::Permanent => reason,
            DeadReason::Exhausted => format!("gave up after {} attempts: {reason}", job.attempt),
        };
        // The catalogue's stable code, for operators to match on; the message is for the creator.
        let code = match &e {
            JobError::Permanent(r) => r.code(),
            JobError::Transient(..) => e.reason(),
        };
        tracing::error!(reason = message, code, "dead-lettering the job");
        // Dead letter first, then the row: a crash in between redelivers the
        // job (it runs once more and is dead-lettered again), never loses it.
        let published = self.publisher.publish_dead(&job.dead(why, message.clone())).await;
        if let Err(publish) = &published {
            tracing::error!(error = format!("{publish:#}"), "could not publish the dead job; the queue will dead-letter it without its reason");
        }
        let mut marked = self.ctx.transcodes.give_up(job.video_id, &message).await;
        for pause in [1, 2, 4] {
            if marked.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
            marked = self.ctx.transcodes.give_up(job.video_id, &message).await;
        }
        if let Err(e) = marked {
            // The admin requeue still works: it revives videos left in flight with no attempt running.
            tracing::error!(error = format!("{e:#}"), "could not mark the video failed");
        }
        self.metrics.job(if why == DeadReason::Permanent { "dead_permanent" } else { "dead_exhausted" });
        if published.is_err() {
            delivery.reject(BasicRejectOptions { requeue: false }).await?;
            return Ok(());
        }
        Ok(delivery.ack(BasicAckOptions::default()).await?)
    }
}
