//! The two cache tiers as one store: memory in front of an optional disk.
//! A disk hit is promoted to memory; a store or a purge reaches both. The
//! request path, the flights and the purge API all go through here, and so
//! do remembered 404s ([`Negative`]), which a purge must clear as well.

use std::sync::Arc;

use crate::disk::Disk;
use crate::memory::Memory;
use crate::negative::Negative;
use crate::object::CachedObject;

#[derive(Clone)]
pub struct Tiers {
    pub memory: Memory,
    pub disk: Option<Disk>,
    pub negative: Negative,
}

impl Tiers {
    pub async fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        if let Some(o) = self.memory.get(key) {
            return Some(o);
        }
        let o = Arc::new(self.disk.as_ref()?.get(key).await?);
        self.memory.insert(key, o.clone());
        Some(o)
    }

    /// Memory first, so readers see the object while the disk write runs.
    pub async fn store(&self, key: &str, object: Arc<CachedObject>) {
        self.memory.insert(key, object.clone());
        if let Some(disk) = &self.disk {
            disk.put(key, &object).await;
        }
    }

    pub fn purge(&self, key: &str) {
        self.negative.purge(key);
        self.memory.purge(key);
        if let Some(d) = &self.disk {
            d.purge(key);
        }
    }

    pub fn purge_prefix(&self, prefix: &str) {
        self.negative.purge_prefix(prefix);
        self.memory.purge_prefix(prefix);
        if let Some(d) = &self.disk {
            d.purge_prefix(prefix);
        }
    }
}
