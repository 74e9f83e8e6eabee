//! Purge: `POST /purge` with `Authorization: Bearer $PURGE_TOKEN` and a JSON
//! body `{"path": "/hls/…"}` (one object) or `{"prefix": "/hls/{id}/"}` (a
//! whole video). The edge that receives it applies it at once and publishes
//! it on a Redis channel every edge subscribes to, so one call reaches every
//! edge; the answer says how many edges were listening. An edge whose
//! subscription is down resubscribes with backoff.
//!
//! Every purge is also kept, with its time, in a sorted set for a week: an
//! edge that was down when it was published replays the ones it missed
//! against its disk tier when it starts, so a restart cannot bring purged
//! bytes back.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;
use shared::cache::Cache;
use shared::configuration::Secret;
use shared::error::Problem;
use shared::purge::{now_ms, PurgeRequest, PURGE_MEMORY};
use uuid::Uuid;

use crate::flight::Flights;
use crate::metrics::EdgeMetrics;
use crate::tiers::Tiers;

#[derive(Clone)]
pub struct Purger {
    /// This process, in what it publishes.
    pub id: Uuid,
    pub tiers: Tiers,
    pub flights: Flights,
    pub metrics: EdgeMetrics,
    pub redis: Cache,
    pub token: Secret,
}


impl Purger {
    /// Applies to the disk tier every purge of the last week that is newer
    /// than the entries it matches (an edge that was down missed them), and
    /// returns how many entries that dropped.
    pub async fn replay_missed(&self) -> anyhow::Result<usize> {
        let Some(disk) = &self.tiers.disk else { return Ok(0) };
        let mut c = self.redis.connection().await?;
        let since = now_ms().saturating_sub(PURGE_MEMORY.as_millis() as u64);
        let logged: Vec<(String, u64)> = redis::cmd("ZRANGEBYSCORE").arg(shared::purge::log_key(&self.redis)).arg(since).arg("+inf").arg("WITHSCORES").query_async(&mut c).await?;
        let missed: Vec<(String, bool, std::time::SystemTime)> = logged
            .into_iter()
            .filter_map(|(raw, at)| {
                let req = serde_json::from_str::<PurgeRequest>(&raw).ok()?;
                let sent = std::time::UNIX_EPOCH + Duration::from_millis(at);
                match (req.path, req.prefix) {
                    (Some(p), _) => Some((p, false, sent)),
                    (_, Some(p)) => Some((p, true, sent)),
                    _ => None,
                }
            })
            .collect();
        Ok(disk.purge_missed(&missed))
    }

    pub fn apply(&self, req: &PurgeRequest) {
        // Running fetches first, so none stores its object after the tiers are cleared.
        self.flights.purge(|key| req.covers(key));
        if let Some(p) = &req.path {
            self.tiers.purge(p);
        }
        if let Some(p) = &req.prefix {
            self.tiers.purge_prefix(p);
        }
        self.metrics.purges.inc();
        tracing::info!(path = ?req.path, prefix = ?req.prefix, "purged");
    }

    /// Applies every purge published by any other edge or service, until the server stops.
    pub fn spawn_subscriber(self) -> tokio::task::JoinHandle<()> {
        let (redis, channel) = (self.redis.clone(), shared::purge::channel(&self.redis));
        shared::purge::spawn_listener(redis, channel, move |msg| {
            // The sender applied its own purge already.
            if msg.from != self.id {
                self.apply(&msg.purge);
            }
        })
    }
}

fn authorized(token: &Secret, headers: &HeaderMap) -> bool {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let want = token.expose();
    // Length leaks nothing useful; the bytes are compared without an early exit.
    given.len() == want.len() && given.bytes().zip(want.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub async fn purge(State(p): State<Purger>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&p.token, &headers) {
        let mut res = Problem::new(StatusCode::UNAUTHORIZED, "purge-unauthorized", "Purge needs the purge token", "Send Authorization: Bearer <PURGE_TOKEN>.").into_response();
        res.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("ascii"));
        return res;
    }
    let req: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, "invalid-purge", "Invalid purge request", format!("expected {{\"path\": …}} or {{\"prefix\": …}}: {e}")).into_response(),
    };
    if let Err(e) = req.check() {
        return Problem::new(StatusCode::BAD_REQUEST, "invalid-purge", "Invalid purge request", e).into_response();
    }
    p.apply(&req);
    let published = shared::purge::publish(&p.redis, p.id, &req);
    match published.await {
        Ok(edges) => (StatusCode::ACCEPTED, Json(json!({ "purge": req, "edges": edges }))).into_response(),
        Err(e) => Problem::unavailable("purge channel (Redis); this edge alone was purged", &e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_must_match_exactly() {
        let token: Secret = "s3cret".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(!authorized(&token, &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&token, &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&token, &h));
    }
}
