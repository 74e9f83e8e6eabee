//! The versioned job message. A consumer rejects versions it does not know
//! instead of guessing, so a rolling upgrade cannot silently mis-handle jobs.
//! Fields added since version 1 have defaults, so older messages still read.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Priorities run 0..=MAX_PRIORITY; the jobs queue is declared with it.
pub const MAX_PRIORITY: u8 = 9;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscodeJob {
    pub version: u32,
    pub job_id: Uuid,
    pub video_id: Uuid,
    pub source_key: String,
    /// 1 for the first try; carried through retries.
    pub attempt: u32,
    /// When this message became due: publish time, or when its retry delay ends.
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    /// Higher runs first; set from the source size (short videos first).
    #[serde(default)]
    pub priority: u8,
    /// The error of the previous attempt (retries and dead letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set on messages in the dead-letter queue: why it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<DeadReason>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// The input can never be transcoded; retrying would not help.
    Permanent,
    /// Every attempt failed transiently.
    Exhausted,
}

/// Short videos first: a creator waiting on a 30 s clip should not queue
/// behind a 2 GiB film. The source size is known at enqueue time, the
/// duration is not, and for one codec family the two go together.
pub fn priority_for_size(bytes: u64) -> u8 {
    const MIB: u64 = 1 << 20;
    match bytes {
        b if b <= 16 * MIB => 9,
        b if b <= 64 * MIB => 7,
        b if b <= 256 * MIB => 5,
        b if b <= 1024 * MIB => 3,
        _ => 1,
    }
}

impl TranscodeJob {
    pub const VERSION: u32 = 1;

    pub fn new(video_id: Uuid, source_key: String, source_size: u64) -> Self {
        Self {
            version: Self::VERSION,
            job_id: Uuid::now_v7(),
            video_id,
            source_key,
            attempt: 1,
            enqueued_at: OffsetDateTime::now_utc(),
            priority: priority_for_size(source_size),
            last_error: None,
            dead_reason: None,
        }
    }

    pub fn decode(payload: &[u8]) -> anyhow::Result<Self> {
        let job: Self = serde_json::from_slice(payload).context("job message is not valid JSON of the expected shape")?;
        if job.version != Self::VERSION {
            bail!("job message version {} is not supported (expected {})", job.version, Self::VERSION);
        }
        Ok(job)
    }

    /// The message for the next attempt, due after `delay`.
    pub fn retry(&self, error: String, delay: std::time::Duration) -> Self {
        Self {
            attempt: self.attempt + 1,
            enqueued_at: OffsetDateTime::now_utc() + delay,
            last_error: Some(error),
            dead_reason: None,
            ..self.clone()
        }
    }

    /// The message for the dead-letter queue.
    pub fn dead(&self, reason: DeadReason, error: String) -> Self {
        Self { last_error: Some(error), dead_reason: Some(reason), ..self.clone() }
    }

    /// A dead job put back: a new job (its attempts are not the dead one's),
    /// a fresh set of attempts, due now.
    pub fn revived(&self) -> Self {
        Self { job_id: Uuid::now_v7(), attempt: 1, enqueued_at: OffsetDateTime::now_utc(), last_error: None, dead_reason: None, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_and_unknown_versions_are_refused() {
        let job = TranscodeJob::new(Uuid::now_v7(), "sources/x".into(), 10);
        let bytes = serde_json::to_vec(&job).unwrap();
        assert_eq!(TranscodeJob::decode(&bytes).unwrap(), job);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["version"] = 2.into();
        let err = TranscodeJob::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("version 2"));
        assert!(TranscodeJob::decode(b"not json").is_err());
    }

    #[test]
    fn messages_from_before_priorities_still_decode() {
        let old = br#"{"version":1,"job_id":"0192d3a0-0000-7000-8000-000000000001","video_id":"0192d3a0-0000-7000-8000-000000000002",
            "source_key":"sources/x","attempt":2,"enqueued_at":"2026-11-21T10:00:00Z"}"#;
        let job = TranscodeJob::decode(old).unwrap();
        assert_eq!((job.attempt, job.priority, job.last_error), (2, 0, None));
    }

    #[test]
    fn retries_carry_the_count_and_the_error_and_revival_resets_them() {
        let job = TranscodeJob::new(Uuid::now_v7(), "sources/x".into(), 1 << 30);
        let next = job.retry("S3 timed out".into(), std::time::Duration::from_secs(4));
        assert_eq!((next.attempt, next.last_error.as_deref(), next.job_id), (2, Some("S3 timed out"), job.job_id));
        assert!(next.enqueued_at > job.enqueued_at + time::Duration::seconds(3));
        let dead = next.dead(DeadReason::Exhausted, "again".into());
        assert_eq!(dead.dead_reason, Some(DeadReason::Exhausted));
        let back = dead.revived();
        assert_eq!((back.attempt, back.dead_reason, back.last_error, back.video_id), (1, None, None, job.video_id));
        assert_ne!(back.job_id, job.job_id);
    }

    #[test]
    fn smaller_sources_get_higher_priority() {
        assert_eq!(priority_for_size(1 << 20), MAX_PRIORITY);
        assert!(priority_for_size(100 << 20) > priority_for_size(2 << 30));
        assert!(priority_for_size(u64::MAX) >= 1);
    }
}
