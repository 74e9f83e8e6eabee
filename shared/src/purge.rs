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

    /// The video a purge is about, when it names one (`/hls/{id}/…`).
    pub fn video_id(&self) -> Option<Uuid> {
        let p = self.path.as_deref().or(self.prefix.as_deref())?;
        Uuid::try_parse(p.strip_prefix("/hls/")?.split('/').next()?).ok()
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

/// The same purges, for origins: they forget what they cached about the
/// video. A channel of its own, so the edge channel's receiver count (what a
/// purge answers with) still counts edges.
pub fn origin_channel(redis: &Cache) -> String {
    format!("{}:origin-purge", redis.prefix())
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
    // Origins first: they forget the video's cached facts before edges,
    // purged, come back for them.
    let (_, _, _, n): (i64, i64, u64, u64) = redis::pipe()
        .atomic()
        .zadd(log_key(redis), &json, now)
        .zrembyscore(log_key(redis), "-inf", now.saturating_sub(PURGE_MEMORY.as_millis() as u64))
        .cmd("PUBLISH")
        .arg(origin_channel(redis))
        .arg(&message)
        .cmd("PUBLISH")
        .arg(channel(redis))
        .arg(&message)
        .query_async(&mut c)
        .await?;
    Ok(n)
}

/// Calls `apply` with every well-formed purge published on `channel`
/// ([`channel`] for edges, [`origin_channel`] for origins), until the task
/// is dropped; a lost subscription is renewed with backoff.
pub fn spawn_listener(redis: Cache, channel: String, apply: impl Fn(Published) + Send + Sync + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            match listen(&redis, &channel, &apply).await {
                Ok(()) => tracing::warn!("purge subscription closed; resubscribing"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "purge subscription failed; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}

async fn listen(redis: &Cache, channel: &str, apply: &(impl Fn(Published) + Send + Sync)) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut pubsub = redis.pubsub().await?;
    pubsub.subscribe(channel).await?;
    tracing::info!(channel, "listening for purges");
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let payload: String = msg.get_payload()?;
        match serde_json::from_str::<Published>(&payload) {
            Ok(msg) if msg.purge.check().is_ok() => apply(msg),
            _ => tracing::warn!(payload, "ignoring a malformed purge message"),
        }
    }
    Ok(())
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
        assert_eq!(v.video_id(), Some(id));
        assert_eq!(req(Some(&format!("/hls/{id}/720p/seg_00001.m4s")), None).video_id(), Some(id));
        assert_eq!(req(None, Some("/hls/not-a-uuid/")).video_id(), None);
    }
}
