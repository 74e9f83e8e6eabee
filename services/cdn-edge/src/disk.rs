//! The disk tier: objects as files under EDGE_DISK_DIR, bounded in bytes,
//! surviving a restart.
//!
//! Each file holds one response: a magic, the length of a JSON header (key,
//! headers, stored-at, freshness, body length), the header, then the body.
//! Files are written to a temporary name and renamed, so a crash leaves
//! either the old file, the new one, or a `.tmp` that the next start
//! deletes; a file whose length disagrees with its header is deleted when
//! read. A file's name carries its key's hash and its store time, so a
//! replaced version never shares a name with its successor and deleting
//! the old one cannot remove the new.
//!
//! The index (key → file) is a moka cache weighted by file size: it evicts
//! by TinyLFU/LRU past the byte bound and by age past the stale windows,
//! and its eviction listener deletes the file. At start the directory is
//! scanned and the index rebuilt, oldest first.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::object::{CachedObject, Freshness};

const MAGIC: &[u8; 4] = b"VPE1";
/// A header longer than this is not one of ours.
const MAX_META: u32 = 256 << 10;

#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    headers: Vec<(String, String)>,
    stored_at_ms: u64,
    freshness: Freshness,
    body_len: u64,
}

#[derive(Debug)]
struct Entry {
    file: PathBuf,
    size: u64,
    stored_at: SystemTime,
    keep: Duration,
}

struct UntilStaleWindowsEnd;

impl moka::Expiry<String, Arc<Entry>> for UntilStaleWindowsEnd {
    fn expire_after_create(&self, _k: &String, e: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        Some(e.keep.saturating_sub(e.stored_at.elapsed().unwrap_or_default()))
    }
    fn expire_after_update(&self, k: &String, e: &Arc<Entry>, now: Instant, _left: Option<Duration>) -> Option<Duration> {
        self.expire_after_create(k, e, now)
    }
}

#[derive(Clone)]
pub struct Disk {
    dir: PathBuf,
    index: moka::sync::Cache<String, Arc<Entry>>,
}

/// Unique per write, even for the same key and millisecond.
fn file_name(key: &str, stored_at_ms: u64) -> String {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{stored_at_ms}-{}-{n}", hex::encode(&Sha256::digest(key.as_bytes())[..16]), std::process::id())
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Disk {
    /// Opens (creating) the directory and rebuilds the index from it.
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create EDGE_DISK_DIR {}: {e}", dir.display()))?;
        let index = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &String, e: &Arc<Entry>| e.size.min(u32::MAX as u64) as u32)
            .expire_after(UntilStaleWindowsEnd)
            .support_invalidation_closures()
            .eviction_listener(|_k, e: Arc<Entry>, cause| {
                // Every cause deletes: a replaced entry's file is the old
                // version, under a name of its own.
                let _ = cause;
                if let Err(err) = std::fs::remove_file(&e.file) {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(file = %e.file.display(), error = %err, "could not delete an evicted cache file");
                    }
                }
            })
            .build();
        let disk = Self { dir: dir.to_owned(), index };
        disk.rebuild()?;
        Ok(disk)
    }

    fn rebuild(&self) -> anyhow::Result<()> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match read_meta(&path) {
                Ok((meta, size)) => found.push((meta, size, path)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "discarding an unreadable cache file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Oldest first, so the recency order after a restart is the store order;
        // a key stored twice keeps only its newest file.
        found.sort_by_key(|(m, _, _)| m.stored_at_ms);
        let mut kept = 0;
        for (meta, size, file) in found {
            let stored_at = UNIX_EPOCH + Duration::from_millis(meta.stored_at_ms);
            let keep = meta.freshness.keep();
            if stored_at.elapsed().unwrap_or_default() >= keep {
                let _ = std::fs::remove_file(&file);
                continue;
            }
            self.index.insert(meta.key, Arc::new(Entry { file, size, stored_at, keep }));
            kept += 1;
        }
        self.index.run_pending_tasks();
        tracing::info!(objects = kept, bytes = self.index.weighted_size(), dir = %self.dir.display(), "disk cache loaded");
        Ok(())
    }

    /// The object, read from its file; None when absent or damaged.
    pub async fn get(&self, key: &str) -> Option<CachedObject> {
        let entry = self.index.get(key)?;
        let file = entry.file.clone();
        match tokio::task::spawn_blocking(move || read_object(&file)).await {
            Ok(Ok(obj)) => Some(obj),
            other => {
                tracing::warn!(file = %entry.file.display(), error = ?other.map(|r| r.err()), "dropping a damaged cache file");
                self.index.invalidate(key);
                None
            }
        }
    }

    /// Stores an object; errors are logged, not returned (a cache write
    /// failing must not fail the response).
    pub async fn put(&self, key: &str, object: &CachedObject) {
        let stored_at_ms = millis(object.stored_at);
        let meta = Meta {
            key: key.to_owned(),
            headers: object.headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect(),
            stored_at_ms,
            freshness: object.freshness,
            body_len: object.body.len() as u64,
        };
        let file = self.dir.join(file_name(key, stored_at_ms));
        let body = object.body.clone();
        let target = file.clone();
        let written = tokio::task::spawn_blocking(move || write_object(&target, &meta, &body)).await;
        match written {
            Ok(Ok(size)) => {
                self.index.insert(key.to_owned(), Arc::new(Entry { file, size, stored_at: object.stored_at, keep: object.freshness.keep() }));
            }
            other => tracing::warn!(file = %file.display(), error = ?other.map(|r| r.err()), "could not write a cache file"),
        }
    }

    pub fn purge(&self, key: &str) {
        self.index.invalidate(key);
    }

    pub fn purge_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        if let Err(e) = self.index.invalidate_entries_if(move |k, _| k.starts_with(&prefix)) {
            tracing::error!(error = %e, "disk purge by prefix failed");
        }
    }

    /// Drops what the purges this edge missed while it was down would have
    /// removed: each `(key or prefix, is a prefix, sent at)` applies to the
    /// entries stored before it was sent. One pass over the index, done now,
    /// rather than a pending predicate per purge on every later lookup.
    pub fn purge_missed(&self, missed: &[(String, bool, SystemTime)]) -> usize {
        let mut dropped = 0;
        for (key, entry) in self.index.iter() {
            let purged = missed.iter().any(|(target, is_prefix, sent)| {
                entry.stored_at < *sent && if *is_prefix { key.starts_with(target.as_str()) } else { *key == *target }
            });
            if purged {
                self.index.invalidate(key.as_str());
                dropped += 1;
            }
        }
        dropped
    }

    pub fn bytes(&self) -> u64 {
        self.index.run_pending_tasks();
        self.index.weighted_size()
    }
}

fn write_object(path: &Path, meta: &Meta, body: &[u8]) -> std::io::Result<u64> {
    let json = serde_json::to_vec(meta)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    f.write_all(MAGIC)?;
    f.write_all(&(json.len() as u32).to_le_bytes())?;
    f.write_all(&json)?;
    f.write_all(body)?;
    f.into_inner().map_err(|e| e.into_error())?;
    std::fs::rename(&tmp, path)?;
    Ok((8 + json.len() + body.len()) as u64)
}

/// The header of a cache file, checked against the file's length.
fn parse_meta(head: &[u8], size: u64) -> anyhow::Result<(Meta, u64)> {
    anyhow::ensure!(head.len() >= 8 && &head[..4] == MAGIC, "not a cache file");
    let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    anyhow::ensure!(len <= MAX_META, "header too long");
    let json = head.get(8..8 + len as usize).ok_or_else(|| anyhow::anyhow!("header cut short"))?;
    let meta: Meta = serde_json::from_slice(json)?;
    let body_at = 8 + len as u64;
    anyhow::ensure!(size == body_at + meta.body_len, "file is {size} bytes, header says {}", body_at + meta.body_len);
    Ok((meta, body_at))
}

/// Only the header, for the start-up scan.
fn read_meta(path: &Path) -> anyhow::Result<(Meta, u64)> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut head = vec![0u8; 8];
    f.read_exact(&mut head)?;
    let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")).min(MAX_META + 1);
    head.resize(8 + len as usize, 0);
    f.read_exact(&mut head[8..])?;
    let (meta, _) = parse_meta(&head, size)?;
    Ok((meta, size))
}

/// The whole object, in one read of the file.
fn read_object(path: &Path) -> anyhow::Result<CachedObject> {
    let all = Bytes::from(std::fs::read(path)?);
    let (meta, body_at) = parse_meta(&all, all.len() as u64)?;
    let body = all.slice(body_at as usize..);
    let mut headers = HeaderMap::new();
    for (k, v) in meta.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            headers.append(k, v);
        }
    }
    Ok(CachedObject { headers, body, stored_at: UNIX_EPOCH + Duration::from_millis(meta.stored_at_ms), freshness: meta.freshness })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn object(len: usize) -> CachedObject {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"e\""));
        CachedObject { headers, body: Bytes::from(vec![7u8; len]), stored_at: SystemTime::now(), freshness: Freshness { fresh_secs: 60, swr_secs: 0, sie_secs: 0 } }
    }

    #[tokio::test]
    async fn objects_survive_a_restart_and_damaged_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 1 << 20).unwrap();
        disk.put("/hls/a/1.m4s", &object(1000)).await;
        disk.put("/hls/a/2.m4s", &object(2000)).await;
        drop(disk);
        // A torn write and a stray temporary file, as a crash would leave.
        std::fs::write(dir.path().join("torn"), b"VPE1\x05\x00\x00\x00{\"k\"").unwrap();
        std::fs::write(dir.path().join("x.tmp"), b"partial").unwrap();
        let disk = Disk::open(dir.path(), 1 << 20).unwrap();
        let back = disk.get("/hls/a/1.m4s").await.expect("kept across restart");
        assert_eq!(back.body.len(), 1000);
        assert_eq!(back.headers[header::ETAG], "\"e\"");
        assert!(disk.get("/hls/a/2.m4s").await.is_some());
        assert!(!dir.path().join("torn").exists() && !dir.path().join("x.tmp").exists());
        disk.purge_prefix("/hls/a/");
        disk.index.run_pending_tasks();
        assert!(disk.get("/hls/a/1.m4s").await.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "purged files are deleted");
    }

    #[tokio::test]
    async fn the_disk_tier_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 64 << 10).unwrap();
        for i in 0..20 {
            disk.put(&format!("/hls/b/{i}.m4s"), &object(8 << 10)).await;
        }
        assert!(disk.bytes() <= 64 << 10, "{}", disk.bytes());
        let on_disk: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk <= 64 << 10, "files on disk: {on_disk} bytes");
    }
}
