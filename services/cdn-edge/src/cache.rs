//! The object cache: whole responses in memory, bounded in bytes.
//!
//! moka gives the byte bound (weigher), TinyLFU admission with LRU eviction,
//! per-entry expiry and — the reason it is used — `or_try_insert_with`, which
//! runs one initialiser per key while concurrent callers wait for its result.
//! That is request coalescing without a hand-written lock table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;

/// A cached 200 response.
#[derive(Debug)]
pub struct CachedObject {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stored_at: Instant,
    pub ttl: Duration,
}

impl CachedObject {
    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }
    fn weight(&self) -> u32 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        (self.body.len() + headers + 128).min(u32::MAX as usize) as u32
    }
}

pub type ObjectCache = moka::future::Cache<String, Arc<CachedObject>>;

struct Freshness;

impl moka::Expiry<String, Arc<CachedObject>> for Freshness {
    fn expire_after_create(&self, _key: &String, value: &Arc<CachedObject>, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub fn new_cache(max_bytes: u64) -> ObjectCache {
    moka::future::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(|_k: &String, v: &Arc<CachedObject>| v.weight())
        .expire_after(Freshness)
        .build()
}

/// How long the origin lets us keep a response, from its Cache-Control.
/// None means "do not store": no-store, private, no-cache (we do not
/// revalidate yet), or no max-age at all (we never guess a lifetime).
pub fn ttl(headers: &HeaderMap) -> Option<Duration> {
    let cc = headers.get(axum::http::header::CACHE_CONTROL).and_then(|v: &HeaderValue| v.to_str().ok())?;
    let mut max_age = None;
    let mut s_maxage = None;
    for d in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        match d.as_str() {
            "no-store" | "private" | "no-cache" => return None,
            _ => {}
        }
        if let Some(v) = d.strip_prefix("s-maxage=") {
            s_maxage = v.parse::<u64>().ok();
        } else if let Some(v) = d.strip_prefix("max-age=") {
            max_age = v.parse::<u64>().ok();
        }
    }
    // A shared cache prefers s-maxage (RFC 9111 §5.2.2.10).
    s_maxage.or(max_age).filter(|s| *s > 0).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CACHE_CONTROL;

    fn cc(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn freshness_follows_cache_control() {
        assert_eq!(ttl(&cc("public, max-age=31536000, immutable")), Some(Duration::from_secs(31536000)));
        assert_eq!(ttl(&cc("max-age=60, s-maxage=5")), Some(Duration::from_secs(5)));
        assert_eq!(ttl(&cc("no-store")), None);
        assert_eq!(ttl(&cc("private, max-age=60")), None);
        assert_eq!(ttl(&cc("max-age=0")), None);
        assert_eq!(ttl(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_in_bytes() {
        let cache = new_cache(1 << 20);
        for i in 0..8 {
            let obj = CachedObject { headers: HeaderMap::new(), body: Bytes::from(vec![0u8; 256 << 10]), stored_at: Instant::now(), ttl: Duration::from_secs(60) };
            cache.insert(format!("k{i}"), Arc::new(obj)).await;
        }
        cache.run_pending_tasks().await;
        assert!(cache.weighted_size() <= 1 << 20, "weighted size {}", cache.weighted_size());
    }
}
