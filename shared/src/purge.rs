//! Edge purges as a message any service can send: `DELETE` of a video (and a
//! change of its visibility) purges `/hls/{id}/` from every edge, not only
//! `POST /purge` on an edge.
//!
//! A purge is published on a Redis channel every edge subscribes to, and kept
//! with its time in a sorted set for a week, so an edge that was down when it
//! was sent replays it against its disk tier when it starts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cache::Cache;

/// How long purges are kept for edges that were down when they were sent.
pub const PURGE_MEMORY: Duration = Duration::from_secs(7 * 86400);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl PurgeRequest {
    /// Everything of one video.
    pub fn video(id: Uuid) -> Self {
        Self { path: None, prefix: Some(format!("/hls/{id}/")) }
    }

    /// Exactly one of path or prefix, inside /hls/; a prefix ends with '/'
    /// so `/hls/ab` cannot purge `/hls/abc…` by accident.
    pub fn check(&self) -> Result<(), String> {
        let ok = |p: &str| p.starts_with("/hls/") && !p.contains(['?', '#', ' ']) && !p.contains("..");
        match (&self.path, &self.prefix) {
            (Some(p), None) if ok(p) => Ok(()),
            (None, Some(p)) if ok(p) && p.ends_with('/') => Ok(()),
            (Some(_), Some(_)) | (None, None) => Err("give exactly one of \"path\" (one object) or \"prefix\" (a folder)".into()),
            _ => Err("a path starts with /hls/ and has no query; a prefix also ends with /".into()),
        }
    }

    /// Whether this purge names `key`.
    pub fn covers(&self, key: &str) -> bool {
        self.path.as_deref() == Some(key) || self.prefix.as_deref().is_some_and(|p| key.starts_with(p))
    }
}

/// A purge on the channel, with the sender: an edge that applied it already
/// skips its own message. Other services send with a fresh id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub from: Uuid,
    pub purge: PurgeRequest,
}

pub fn channel(redis: &Cache) -> String {
    format!("{}:edge-purge", redis.prefix())
}

pub fn log_key(redis: &Cache) -> String {
    format!("{}:edge-purges", redis.prefix())
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Logs and publishes `req`; returns how many edges were listening.
pub async fn publish(redis: &Cache, from: Uuid, req: &PurgeRequest) -> anyhow::Result<u64> {
    let mut c = redis.connection().await?;
    let (json, now) = (serde_json::to_string(req)?, now_ms());
    let message = serde_json::to_string(&Published { from, purge: req.clone() })?;
    let (_, _, n): (i64, i64, u64) = redis::pipe()
        .atomic()
        .zadd(log_key(redis), &json, now)
        .zrembyscore(log_key(redis), "-inf", now.saturating_sub(PURGE_MEMORY.as_millis() as u64))
        .cmd("PUBLISH")
        .arg(channel(redis))
        .arg(&message)
        .query_async(&mut c)
        .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: Option<&str>, prefix: Option<&str>) -> PurgeRequest {
        PurgeRequest { path: path.map(str::to_owned), prefix: prefix.map(str::to_owned) }
    }

    #[test]
    fn a_purge_names_one_object_or_one_folder_inside_hls() {
        assert!(req(Some("/hls/v/720p/seg_00001.m4s"), None).check().is_ok());
        assert!(req(None, Some("/hls/v/")).check().is_ok());
        assert!(req(None, Some("/hls/v")).check().is_err());
        assert!(req(Some("/etc/passwd"), None).check().is_err());
        assert!(req(Some("/hls/a"), Some("/hls/")).check().is_err());
        assert!(req(None, None).check().is_err());
        let id = Uuid::new_v4();
        let v = PurgeRequest::video(id);
        assert!(v.check().is_ok() && v.covers(&format!("/hls/{id}/720p/seg_00001.m4s")) && !v.covers(&format!("/hls/{id}x/a")));
    }
}
