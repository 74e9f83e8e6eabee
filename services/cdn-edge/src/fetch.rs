//! Requests to the origin. A miss reads the whole object (bounded by
//! EDGE_MAX_OBJECT_BYTES) so it can be cached; anything that must not or
//! cannot be cached comes back as a [`Miss`] that explains what to do instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::cache::{ttl, CachedObject};

/// Headers of the origin's response worth keeping and replaying.
const KEPT: [HeaderName; 5] = [header::CONTENT_TYPE, header::ETAG, header::LAST_MODIFIED, header::CACHE_CONTROL, header::CONTENT_ENCODING];
/// Non-200 bodies (problem details) are small; cap what we copy.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Why a miss did not produce a cacheable object. Shared by every request
/// that waited on the same fetch.
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    #[error("origin answered {status}; passed on, not cached")]
    Uncacheable { status: StatusCode, headers: HeaderMap, body: Bytes },
    #[error("object larger than the cacheable size")]
    TooLarge,
    #[error("origin unreachable: {0}")]
    Unreachable(String),
}

#[derive(Clone)]
pub struct Origin {
    client: reqwest::Client,
    base: String,
    max_object: u64,
    pub fetches: prometheus::IntCounter,
}

impl Origin {
    pub fn new(base: &str, max_object: u64, fetches: prometheus::IntCounter) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned(), max_object, fetches })
    }

    async fn get(&self, path: &str, extra: HeaderMap) -> Result<reqwest::Response, Miss> {
        self.fetches.inc();
        let mut headers = extra;
        shared::telemetry::inject_current(&mut shared::telemetry::HeaderInjector(&mut headers));
        self.client
            .get(format!("{}{path}", self.base))
            .headers(headers)
            .send()
            .await
            .map_err(|e| Miss::Unreachable(e.to_string()))
    }

    /// Fetches a whole object for the cache.
    pub async fn fetch(&self, path: &str) -> Result<Arc<CachedObject>, Miss> {
        let res = self.get(path, HeaderMap::new()).await?;
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = keep(res.headers());
        let ttl = ttl(&headers);
        if status != StatusCode::OK || ttl.is_none() {
            let body = read_capped(res, MAX_ERROR_BODY).await?.ok_or(Miss::TooLarge)?;
            return Err(Miss::Uncacheable { status, headers, body });
        }
        if res.content_length().is_some_and(|n| n > self.max_object) {
            return Err(Miss::TooLarge);
        }
        let body = read_capped(res, self.max_object as usize).await?.ok_or(Miss::TooLarge)?;
        Ok(Arc::new(CachedObject { headers, body, stored_at: Instant::now(), ttl: ttl.expect("checked") }))
    }

    /// Streams an object straight through (too large to cache).
    pub async fn pass_through(&self, path: &str, request: &HeaderMap) -> Result<Response, Miss> {
        let mut extra = HeaderMap::new();
        for h in [header::RANGE, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
            if let Some(v) = request.get(&h) {
                extra.insert(h, v.clone());
            }
        }
        let res = self.get(path, extra).await?;
        let mut out = Response::builder().status(res.status().as_u16());
        let h = out.headers_mut().expect("valid builder");
        h.extend(keep(res.headers()));
        for name in [header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ACCEPT_RANGES] {
            if let Some(v) = res.headers().get(name.as_str()) {
                h.insert(name, v.clone());
            }
        }
        Ok(out.body(Body::from_stream(res.bytes_stream())).expect("valid response"))
    }
}

fn keep(from: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in KEPT {
        if let Some(v) = from.get(name.as_str()) {
            h.insert(name, v.clone());
        }
    }
    h
}

/// The whole body, or None once it passes `cap` (the rest is not read).
async fn read_capped(res: reqwest::Response, cap: usize) -> Result<Option<Bytes>, Miss> {
    let mut buf = BytesMut::with_capacity(res.content_length().unwrap_or(0).min(cap as u64) as usize);
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Miss::Unreachable(format!("origin body: {e}")))?;
        if buf.len() + chunk.len() > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}
