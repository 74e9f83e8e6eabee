//! The memory tier: whole objects, bounded in bytes. moka gives the byte
//! bound (weigher), TinyLFU admission with LRU eviction — so a one-off
//! object does not push out a hot one — and per-entry expiry at the end of
//! the entry's longest stale window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::object::CachedObject;

struct KeepUntilStaleWindowsEnd;

impl moka::Expiry<String, Arc<CachedObject>> for KeepUntilStaleWindowsEnd {
    fn expire_after_create(&self, _key: &String, value: &Arc<CachedObject>, _now: Instant) -> Option<Duration> {
        // An object promoted from disk is already some seconds old.
        Some(value.freshness.keep().saturating_sub(value.age()))
    }
    fn expire_after_update(&self, key: &String, value: &Arc<CachedObject>, now: Instant, _left: Option<Duration>) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

#[derive(Clone)]
pub struct Memory {
    cache: moka::sync::Cache<String, Arc<CachedObject>>,
}

impl Memory {
    pub fn new(max_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &String, v: &Arc<CachedObject>| v.weight())
            .expire_after(KeepUntilStaleWindowsEnd)
            .support_invalidation_closures()
            .build();
        Self { cache }
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: &str, object: Arc<CachedObject>) {
        self.cache.insert(key.to_owned(), object);
    }

    pub fn purge(&self, key: &str) {
        self.cache.invalidate(key);
    }

    pub fn purge_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        if let Err(e) = self.cache.invalidate_entries_if(move |k, _| k.starts_with(&prefix)) {
            tracing::error!(error = %e, "memory purge by prefix failed");
        }
    }

    pub fn bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Freshness;
    use axum::http::HeaderMap;
    use bytes::Bytes;
    use std::time::SystemTime;

    #[test]
    fn the_memory_tier_is_bounded_in_bytes_and_purges_by_prefix() {
        let memory = Memory::new(1 << 20);
        for i in 0..8 {
            let obj = CachedObject {
                headers: HeaderMap::new(),
                body: Bytes::from(vec![0u8; 256 << 10]),
                stored_at: SystemTime::now(),
                freshness: Freshness { fresh_secs: 60, swr_secs: 0, sie_secs: 0 },
            };
            memory.insert(&format!("/hls/a/{i}"), Arc::new(obj));
        }
        assert!(memory.bytes() <= 1 << 20, "weighted size {}", memory.bytes());
        memory.purge_prefix("/hls/a/");
        memory.cache.run_pending_tasks();
        assert!((0..8).all(|i| memory.get(&format!("/hls/a/{i}")).is_none()));
    }
}
