//! No orphaned bytes: the reconciler every upload service runs.
//!
//! In-process guards cannot cover a process that dies: a SIGKILL between
//! `CompleteMultipartUpload` and the row's insert leaves a source no row
//! knows, and a killed upload leaves its multipart upload open, billed and
//! invisible. So each round, on any replica (every step is idempotent):
//!
//! - objects under `sources/` and `tus/` older than the grace period that no
//!   row names (`videos.source_key`, `uploads.object_key`, or a tus tail of
//!   an upload row) are deleted;
//! - multipart uploads started before the grace period are aborted, unless a
//!   tus upload row that has not expired still owns them (the tus sweeper
//!   reclaims those when they expire);
//! - at start, the bucket gets a lifecycle rule aborting incomplete
//!   multipart uploads after some days, where the server supports one, as
//!   a second line of defence.
//!
//! The grace period must exceed the longest an upload request may take, so a
//! row that is about to commit is never raced.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use prometheus::IntCounterVec;
use sqlx::PgPool;

use crate::metrics::Metrics;
use crate::storage::Storage;

/// Where uploads put bytes; nothing else is ever touched.
const PREFIXES: [&str; 2] = ["sources/", "tus/"];
const TAILS: &str = "tus/tails/";
/// Keys looked up in PostgreSQL at once.
const BATCH: usize = 500;

#[derive(Debug, Default, PartialEq)]
pub struct Reconciled {
    pub objects: usize,
    pub multipart: usize,
}

#[derive(Clone)]
pub struct Reconciler {
    pool: PgPool,
    storage: Storage,
    grace: Duration,
    removed: IntCounterVec,
}

impl Reconciler {
    pub fn new(pool: PgPool, storage: Storage, grace: Duration, metrics: &Metrics) -> Self {
        let removed = metrics.register(
            IntCounterVec::new(
                prometheus::Opts::new("orphans_removed_total", "Upload bytes no row knew, removed by the reconciler (object: a whole object; multipart: an open multipart upload)"),
                &["kind"],
            )
            .expect("valid metric"),
        );
        Self { pool, storage, grace, removed }
    }

    /// Runs a round every `every`, forever; a failed round is logged and retried.
    pub async fn run(self, every: Duration, lifecycle_days: i32) {
        match self.storage.expire_incomplete_multipart(lifecycle_days).await {
            Ok(true) => tracing::info!(days = lifecycle_days, "bucket aborts incomplete multipart uploads by itself"),
            Ok(false) => tracing::info!("bucket has lifecycle rules of its own; left as they are"),
            Err(e) => tracing::info!(error = format!("{e:#}"), "bucket lifecycle rules unavailable; the reconciler alone reclaims multipart uploads"),
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.round().await {
                Ok(r) if r != Reconciled::default() => tracing::info!(objects = r.objects, multipart = r.multipart, "removed orphaned upload bytes"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "reconciler round failed; retrying next round"),
            }
        }
    }

    pub async fn round(&self) -> anyhow::Result<Reconciled> {
        let cutoff = SystemTime::now() - self.grace;
        let mut done = Reconciled::default();
        for prefix in PREFIXES {
            let keys = self.storage.keys_older_than(prefix, cutoff).await?;
            for batch in keys.chunks(BATCH) {
                let known = self.known_keys(batch).await?;
                let orphans: Vec<String> = batch.iter().filter(|k| !known.contains(*k)).cloned().collect();
                self.storage.delete_keys(&orphans).await?;
                for key in &orphans {
                    tracing::warn!(key, "deleted an object no row knows");
                }
                self.removed.with_label_values(&["object"]).inc_by(orphans.len() as u64);
                done.objects += orphans.len();
            }
            let uploads = self.storage.multipart_uploads_older_than(prefix, cutoff).await?;
            let ids: Vec<String> = uploads.iter().map(|(_, id)| id.clone()).collect();
            let owned = self.owned_multipart(&ids).await?;
            for (key, id) in uploads.iter().filter(|(_, id)| !owned.contains(id)) {
                self.storage.abort_multipart(key, id).await?;
                tracing::warn!(key, "aborted a multipart upload no live upload owns");
                self.removed.with_label_values(&["multipart"]).inc();
                done.multipart += 1;
            }
        }
        Ok(done)
    }

    /// Which of `keys` a row still names.
    async fn known_keys(&self, keys: &[String]) -> anyhow::Result<HashSet<String>> {
        let tails: Vec<uuid::Uuid> = keys.iter().filter_map(|k| k.strip_prefix(TAILS)?.parse().ok()).collect();
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT source_key FROM videos WHERE source_key = ANY($1)
             UNION SELECT object_key FROM uploads WHERE object_key = ANY($1)
             UNION SELECT 'tus/tails/' || id::text FROM uploads WHERE id = ANY($2)",
        )
        .bind(keys)
        .bind(&tails)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Which multipart upload ids belong to tus uploads that have not expired.
    async fn owned_multipart(&self, ids: &[String]) -> anyhow::Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<(String,)> = sqlx::query_as("SELECT s3_upload_id FROM uploads WHERE s3_upload_id = ANY($1) AND expires_at > now()")
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
