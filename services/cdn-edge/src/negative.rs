//! Negative caching: a 404 from the origin is kept briefly
//! (EDGE_NEGATIVE_TTL), so requests for objects that do not exist (random
//! `/hls/<uuid>/…` URLs) cost the origin one fetch per key and TTL instead
//! of one each. Bounded in bytes (EDGE_NEGATIVE_BYTES) like the tiers, and
//! cleared by a purge like them, so a video that becomes ready can be
//! served at once after its purge rather than after the TTL.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;

/// A remembered 404: the origin's headers and problem body.
#[derive(Debug)]
pub struct NotFound {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl NotFound {
    fn weight(&self, key: &str) -> u32 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        (key.len() + self.body.len() + headers + 128).min(u32::MAX as usize) as u32
    }
}

#[derive(Clone)]
pub struct Negative {
    /// None when EDGE_NEGATIVE_TTL is 0.
    cache: Option<moka::sync::Cache<String, Arc<NotFound>>>,
}

impl Negative {
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Arc<NotFound>| v.weight(k))
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build()
        });
        Self { cache }
    }

    pub fn get(&self, key: &str) -> Option<Arc<NotFound>> {
        self.cache.as_ref()?.get(key)
    }

    pub fn insert(&self, key: &str, not_found: NotFound) {
        if let Some(c) = &self.cache {
            c.insert(key.to_owned(), Arc::new(not_found));
        }
    }

    pub fn purge(&self, key: &str) {
        if let Some(c) = &self.cache {
            c.invalidate(key);
        }
    }

    pub fn purge_prefix(&self, prefix: &str) {
        let Some(c) = &self.cache else { return };
        let prefix = prefix.to_owned();
        if let Err(e) = c.invalidate_entries_if(move |k, _| k.starts_with(&prefix)) {
            tracing::error!(error = %e, "negative cache purge by prefix failed");
        }
    }

    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found() -> NotFound {
        NotFound { headers: HeaderMap::new(), body: Bytes::from(vec![b'x'; 1000]) }
    }

    #[test]
    fn entries_expire_are_bounded_and_purged_by_key_or_prefix() {
        let n = Negative::new(Duration::from_millis(200), 64 << 10);
        for i in 0..200 {
            n.insert(&format!("/hls/a/{i}.m4s"), not_found());
        }
        assert!(n.bytes() <= 64 << 10, "{}", n.bytes());
        n.insert("/hls/b/1.m4s", not_found());
        n.insert("/hls/c/1.m4s", not_found());
        assert!(n.get("/hls/b/1.m4s").is_some());
        n.purge("/hls/b/1.m4s");
        assert!(n.get("/hls/b/1.m4s").is_none());
        n.purge_prefix("/hls/c/");
        assert!(n.get("/hls/c/1.m4s").is_none());
        n.insert("/hls/d/1.m4s", not_found());
        std::thread::sleep(Duration::from_millis(300));
        assert!(n.get("/hls/d/1.m4s").is_none(), "gone after the TTL");
        let off = Negative::new(Duration::ZERO, 1 << 20);
        off.insert("/hls/e/1.m4s", not_found());
        assert!(off.get("/hls/e/1.m4s").is_none(), "a TTL of 0 turns it off");
    }
}
