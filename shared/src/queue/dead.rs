//! The dead-letter queue, browsed and drained over plain AMQP, so operators
//! need no management plugin.
//!
//! AMQP has no "peek": a listing takes messages with `basic_get` without
//! acknowledging them and closes its channel, which hands every one back to
//! the queue in its place. A requeue does the same until it meets the job it
//! wants, publishes that one to the jobs exchange (confirmed) and only then
//! acknowledges it, so a crash at any point leaves the job in one of the two
//! queues, never in neither. Both are bounded in messages scanned.

use std::future::Future;

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::Channel;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::job::{DeadReason, TranscodeJob};
use super::{Publisher, QueueSettings, Topology};

/// A dead job as an operator sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadJob {
    /// None when the message is not a job this version can read.
    pub job_id: Option<Uuid>,
    pub video_id: Option<Uuid>,
    pub attempts: Option<u32>,
    pub reason: Option<DeadReason>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub dead_at: Option<OffsetDateTime>,
    /// The first bytes of a message that is not a readable job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl DeadJob {
    fn from_message(data: &[u8], timestamp: Option<u64>) -> Self {
        let dead_at = timestamp.and_then(|t| OffsetDateTime::from_unix_timestamp(t as i64).ok());
        match TranscodeJob::decode(data) {
            Ok(j) => Self {
                job_id: Some(j.job_id),
                video_id: Some(j.video_id),
                attempts: Some(j.attempt),
                reason: j.dead_reason,
                last_error: j.last_error,
                dead_at,
                raw: None,
            },
            Err(e) => Self {
                job_id: None,
                video_id: None,
                attempts: None,
                reason: None,
                last_error: Some(format!("{e:#}")),
                dead_at,
                raw: Some(String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned()),
            },
        }
    }
}

/// What the caller decides for the dead job it asked for.
pub enum Decision {
    /// Publish it again (with fresh attempts) and remove it from the dead queue.
    Requeue,
    /// Remove it without publishing (its video is gone).
    Discard,
    /// Leave it where it is.
    Keep,
}

#[derive(Debug, PartialEq)]
pub enum Requeued {
    Requeued(TranscodeJob),
    Discarded(TranscodeJob),
    Kept(TranscodeJob),
    NotFound,
}

pub struct DeadLetters {
    settings: QueueSettings,
    topology: Topology,
    /// Within one process, browses do not hide messages from each other.
    lock: Mutex<()>,
}

impl DeadLetters {
    pub fn new(settings: QueueSettings) -> Self {
        let topology = settings.names();
        Self { settings, topology, lock: Mutex::new(()) }
    }

    async fn channel(&self) -> anyhow::Result<(lapin::Connection, Channel)> {
        let conn = self.settings.connect().await?;
        let ch = conn.create_channel().await?;
        self.topology.declare(&ch).await?;
        Ok((conn, ch))
    }

    /// Up to `limit` dead jobs, oldest first, and how many the queue holds.
    pub async fn list(&self, limit: usize) -> anyhow::Result<(Vec<DeadJob>, u32)> {
        let _one_at_a_time = self.lock.lock().await;
        let (conn, ch) = self.channel().await?;
        let mut out = Vec::new();
        let mut total = 0;
        while out.len() < limit {
            let Some(m) = ch.basic_get(&self.topology.dead_queue, BasicGetOptions { no_ack: false }).await? else { break };
            if out.is_empty() {
                // What was left behind the first message, plus the first.
                total = m.message_count + 1;
            }
            out.push(DeadJob::from_message(&m.delivery.data, m.delivery.properties.timestamp().as_ref().copied()));
        }
        // Closing without acks returns every message to the queue.
        let _ = conn.close(200, "listed").await;
        Ok((out, total))
    }

    /// Finds job `job_id` among the first `scan` dead messages and settles it
    /// as `decide` says. `decide` runs before anything is published.
    pub async fn requeue<F, Fut>(&self, job_id: Uuid, scan: usize, publisher: &Publisher, decide: F) -> anyhow::Result<Requeued>
    where
        F: FnOnce(TranscodeJob) -> Fut,
        Fut: Future<Output = anyhow::Result<Decision>>,
    {
        let _one_at_a_time = self.lock.lock().await;
        let (conn, ch) = self.channel().await?;
        let mut outcome = Requeued::NotFound;
        for _ in 0..scan {
            let Some(m) = ch.basic_get(&self.topology.dead_queue, BasicGetOptions { no_ack: false }).await? else { break };
            let Ok(job) = TranscodeJob::decode(&m.delivery.data) else { continue };
            if job.job_id != job_id {
                continue;
            }
            outcome = match decide(job.clone()).await? {
                Decision::Requeue => {
                    let revived = job.revived();
                    publisher.publish(&revived).await?;
                    m.delivery.ack(BasicAckOptions::default()).await?;
                    Requeued::Requeued(revived)
                }
                Decision::Discard => {
                    m.delivery.ack(BasicAckOptions::default()).await?;
                    Requeued::Discarded(job)
                }
                Decision::Keep => Requeued::Kept(job),
            };
            break;
        }
        let _ = conn.close(200, "requeue done").await;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_messages_are_listed_with_their_first_bytes() {
        let d = DeadJob::from_message(b"garbage", Some(1_700_000_000));
        assert_eq!((d.job_id, d.raw.as_deref()), (None, Some("garbage")));
        assert!(d.last_error.unwrap().contains("not valid JSON"));
        let job = TranscodeJob::new(Uuid::now_v7(), "sources/x".into(), 1).dead(DeadReason::Permanent, "not a video".into());
        let d = DeadJob::from_message(&serde_json::to_vec(&job).unwrap(), None);
        assert_eq!((d.job_id, d.reason, d.last_error.as_deref()), (Some(job.job_id), Some(DeadReason::Permanent), Some("not a video")));
    }
}
