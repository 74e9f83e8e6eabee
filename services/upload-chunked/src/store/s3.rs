//! [`S3Store`]: tus uploads as S3 multipart uploads, state in PostgreSQL.
//!
//! Object layout (keys from `shared::layout`):
//! - a single upload writes straight to `sources/{id}`, the key the video
//!   will have, so completing it is one CompleteMultipartUpload, no copy;
//! - a partial upload writes to `tus/partials/{id}` and is deleted once a
//!   final upload has assembled it;
//! - a final upload is assembled into `sources/{id}` from its partials;
//! - `tus/tails/{id}` holds the bytes past the last whole part (< one part).
//!
//! One tus upload is one S3 multipart upload whose id is recorded before
//! its first part is sent, so termination and the expiry sweeper can always
//! abort it and no part is left billed. Termination forgets the row only
//! after every byte is freed, for the same reason.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_s3::types::CompletedPart;
use http_body_util::BodyExt;
use shared::layout;
use shared::storage::{MultipartWriter, Storage, Stored};
use time::OffsetDateTime;
use uuid::Uuid;

use super::append::{Appender, Target};
use super::rows::{Row, Rows};
use super::{Appended, Chunk, DataStore, Kind, Lease, NewUpload, Upload};
use crate::checksum::{Algorithm, ChunkHasher, ResumableSha256};
use crate::configuration::TusSettings;
use crate::error::TusError;
use crate::protocol::{names, Checksum, ChecksumPlan};

#[derive(Clone)]
pub struct S3Store {
    storage: Storage,
    rows: Rows,
    settings: TusSettings,
}

impl S3Store {
    pub fn new(storage: Storage, pool: sqlx::PgPool, settings: TusSettings) -> Self {
        Self {
            storage,
            rows: Rows::new(pool),
            settings,
        }
    }

    fn row_to_upload(row: Row, partials: Option<(Vec<Uuid>, Option<u64>)>) -> Upload {
        let (kind, length) = match (row.concat.as_str(), partials) {
            ("final", Some((ids, sum))) => (Kind::Final(ids), row.length.map(|l| l as u64).or(sum)),
            ("partial", _) => (Kind::Partial, row.length.map(|l| l as u64)),
            _ => (Kind::Single, row.length.map(|l| l as u64)),
        };
        Upload {
            id: row.id,
            kind,
            length,
            offset: row.upload_offset as u64,
            metadata: row.metadata,
            expires_at: row.expires_at,
            completed: row.completed_at.is_some(),
            video_id: row.video_id,
            consumed: row.consumed_by.is_some(),
            failure: row.failure,
            owner_id: row.owner_id,
            visibility: row.visibility,
        }
    }

    fn target<'a>(&'a self, id: Uuid, lease: &'a Lease) -> Target<'a> {
        Target {
            storage: &self.storage,
            rows: &self.rows,
            lease,
            tail_key: layout::tus_tail(id),
            max_in_flight: self.settings.parts_in_flight,
            expiry: self.settings.expiry.0,
        }
    }

    async fn row(&self, id: Uuid) -> Result<Row, TusError> {
        self.rows.get(id).await?.ok_or(TusError::NotFound)
    }

    /// Deletes an object, a tail or aborts an upload; a cleanup that fails
    /// is logged and left to the sweeper rather than failing the request.
    fn best_effort(what: &str, res: anyhow::Result<()>) {
        if let Err(e) = res {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not {what}; the sweeper will retry"
            );
        }
    }


    fn verify_sha256(&self, got: &str, expect: Option<&str>) -> bool {
        expect.is_none_or(|want| want.eq_ignore_ascii_case(got))
    }


    async fn refuse(&self, lease: &Lease, row: &Row, why: &str) -> Result<Stored, TusError> {
        Self::best_effort("delete refused object",
            self.storage.delete(&row.object_key).await,
        );
        self.rows.mark_failed(row.id, lease.holder(), why).await?;
        Err(TusError::FileChecksumMismatch)
    }
}

#[async_trait]
impl DataStore for S3Store {
    async fn create(&self, new: NewUpload) -> anyhow::Result<Upload> {
        let key = match &new.kind {
            Kind::Single | Kind::Final(_) => layout::source(new.id),
            Kind::Partial => layout::tus_partial(new.id),
        };
        let part_size =
            shared::storage::part_size_for(self.settings.max_size.0, self.settings.part_bytes).0;
        let expires = OffsetDateTime::now_utc() + self.settings.expiry.0;
        self.rows.insert(&new, &key, part_size, expires).await?;
        self.get(new.id)
            .await?
            .context("upload vanished after insert")
    }

    async fn get(&self, id: Uuid) -> anyhow::Result<Option<Upload>> {
        let Some(row) = self.rows.get(id).await? else {
            return Ok(None);
        };
        if row.concat != "final" {
            return Ok(Some(Self::row_to_upload(row, None)));
        }
        let partials = self.rows.partials_of(id).await?;
        let sum = partials.iter().try_fold(0u64, |sum, (_, len)| Some(sum + (*len)? as u64));
        let ids = partials.into_iter().map(|(id, _)| id).collect();
        Ok(Some(Self::row_to_upload(row, Some((ids, sum)))))
    }

    async fn lease(&self, id: Uuid, wait: Duration) -> Result<Lease, TusError> {
        Lease::acquire(&self.rows, id, self.settings.lease_ttl.0, wait).await
    }

    async fn declare_length(
        &self,
        lease: &Lease,
        upload: &Upload,
        length: u64,
    ) -> anyhow::Result<()> {
        self.rows.set_length(upload.id, lease.holder(), length).await
    }

    async fn append(
        &self,
        lease: &Lease,
        upload: &Upload,
        chunk: Chunk,
    ) -> Result<Appended, TusError> {
        let row = self.row(upload.id).await?;
        let start = row.upload_offset as u64;
        let limit = row
            .length
            .map(|l| l as u64)
            .unwrap_or(self.settings.max_size.0)
            .saturating_sub(start);
        // Commit part by part only when nothing can still refuse the body.
        let eager = chunk.checksum == ChecksumPlan::None
            && chunk.content_length.is_some_and(|n| n <= limit);
        let mut appender = Appender::resume(self.target(upload.id, lease), &row, eager).await?;
        let mut verifiers = Verifiers::for_plan(&chunk.checksum);
        let mut trailer: Option<Result<Checksum, TusError>> = None;
        let (mut received, mut overflow, mut interrupted) = (0u64, false, false);
        let mut breach = None;
        let (mut body, mut pace) = (chunk.body, chunk.pace);
        let mut last_report = Instant::now();
        loop {
            let frame = match pace.guard(body.frame()).await {
                Err(b) => {
                    (interrupted, breach) = (true, Some(b));
                    break;
                }
                Ok(Some(Err(_))) => {
                    interrupted = true;
                    break;
                }
                Ok(None) => break,
                Ok(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailer = t.get(names::UPLOAD_CHECKSUM).map(|v| {
                            v.to_str()
                                .map_err(|_| {
                                    TusError::BadHeader(
                                        "upload-checksum".into(),
                                        "is not ASCII".into(),
                                    )
                                })
                                .and_then(Checksum::parse)
                        });
                    }
                    continue;
                }
            };
            if received + data.len() as u64 > limit {
                overflow = true;
                break;
            }
            received += data.len() as u64;
            verifiers.update(&data);
            let len = data.len() as u64;
            appender.push(data).await?;
            if last_report.elapsed() >= Duration::from_millis(250) {
                (chunk.on_progress)(start + received, received);
                last_report = Instant::now();
            }
            if let Err(b) = pace.record(len, tokio::time::Instant::now()) {
                (interrupted, breach) = (true, Some(b));
                break;
            }
        }
        if overflow {
            appender.discard();
            return Err(TusError::ExceedsLength { remaining: limit });
        }
        let proof = match &chunk.checksum {
            ChecksumPlan::None => None,
            ChecksumPlan::Header(c) => Some(c.clone()),
            ChecksumPlan::Trailer => match trailer {
                Some(Err(e)) => {
                    appender.discard();
                    return Err(e);
                }
                Some(Ok(c)) => Some(c),
                None if interrupted => None,
                None => {
                    appender.discard();
                    return Err(TusError::TrailerMissing);
                }
            },
        };
        if chunk.checksum != ChecksumPlan::None {
            let Some(proof) = proof.filter(|_| !interrupted) else {
                // Bytes that cannot be checked are not kept.
                appender.discard();
                return Ok(Appended {
                    offset: start,
                    interrupted: true,
                    expires_at: None,
                    breach,
                });
            };
            if verifiers.digest(proof.algorithm) != Some(proof.digest) {
                appender.discard();
                return Err(TusError::ChecksumMismatch);
            }
        }
        let last = row.length.is_some_and(|l| start + received == l as u64);
        let (offset, expires_at) = appender.finish(last).await?;
        Ok(Appended {
            offset,
            interrupted,
            expires_at: Some(expires_at),
            breach,
        })
    }

    async fn complete(
        &self,
        lease: &Lease,
        upload: &Upload,
        expect_sha256: Option<&str>,
    ) -> Result<Stored, TusError> {
        let mut row = self.row(upload.id).await?;
        let length = row
            .length
            .context("completing an upload of unknown length")? as u64;
        let sha256 = ResumableSha256::from_bytes(&row.sha256_state)?.hex();
        if row.completed_at.is_some() {
            return Ok(Stored {
                key: row.object_key,
                size: length,
                sha256,
            });
        }
        if row.tail_bytes > 0 {
            // A deferred length declared after the bytes arrived: the tail becomes the last part.
            let appender = Appender::resume(self.target(row.id, lease), &row, true).await?;
            appender.finish(true).await?;
            row = self.row(upload.id).await?;
        }
        if let Some(uid) = &row.s3_upload_id {
            let parts = self.rows.parts(row.id).await?;
            let parts = parts.iter().map(|p| CompletedPart::builder().part_number(p.number).e_tag(&p.etag).build()).collect();
            if let Err(e) = self.storage.complete_multipart(&row.object_key, uid, parts).await {
                // An earlier completion may have succeeded just before a crash; the size check below decides.
                tracing::warn!(upload_id = %row.id, error = format!("{e:#}"), "CompleteMultipartUpload failed");
            }
        }
        let size = self.storage.size(&row.object_key).await?;
        if size != Some(length) {
            return Err(TusError::Internal(anyhow::anyhow!(
                "object {} has {size:?} bytes after completion, expected {length}",
                row.object_key
            )));
        }
        if !self.verify_sha256(&sha256, expect_sha256) {
            return self
                .refuse(
                    lease,
                    &row,
                    "the file's SHA-256 does not match the checksum in its metadata",
                )
                .await;
        }
        Self::best_effort("delete tail",
            self.storage.delete(&layout::tus_tail(row.id)).await,
        );
        self.rows.mark_complete(row.id, lease.holder(), length).await?;
        Ok(Stored {
            key: row.object_key,
            size: length,
            sha256,
        })
    }

    async fn assemble(
        &self,
        lease: &Lease,
        final_upload: &Upload,
        partials: &[Upload],
        expect_sha256: Option<&str>,
    ) -> Result<Stored, TusError> {
        let row = self.row(final_upload.id).await?;
        if let Some(uid) = &row.s3_upload_id {
            Self::best_effort("abort multipart upload", self.storage.abort_multipart(&row.object_key, uid).await);
        }
        let part_size = shared::configuration::ByteSize(row.part_size as u64);
        let mut writer = MultipartWriter::begin(
            &self.storage,
            &row.object_key,
            "application/octet-stream",
            part_size,
            self.settings.parts_in_flight,
        )
        .await?;
        self.rows.set_s3_upload(row.id, lease.holder(), writer.upload_id()).await?;
        for p in partials {
            let key = layout::tus_partial(p.id);
            let obj = self
                .storage
                .get(&key)
                .await?
                .with_context(|| format!("partial upload {} has no object", p.id))?;
            let mut body = obj.body;
            while let Some(bytes) = body
                .try_next()
                .await
                .with_context(|| format!("reading partial {}", p.id))?
            {
                writer.write(bytes).await?;
            }
        }
        let stored = writer.finish().await?;
        if !self.verify_sha256(&stored.sha256, expect_sha256) {
            return self
                .refuse(
                    lease,
                    &row,
                    "the assembled file's SHA-256 does not match the checksum in its metadata",
                )
                .await;
        }
        self.rows.mark_complete(row.id, lease.holder(), stored.size).await?;
        let ids: Vec<Uuid> = partials.iter().map(|p| p.id).collect();
        self.rows.mark_consumed(&ids, row.id).await?;
        for id in ids {
            Self::best_effort("delete assembled partial",
                self.storage.delete(&layout::tus_partial(id)).await,
            );
        }
        Ok(stored)
    }

    async fn terminate(&self, lease: &Lease, id: Uuid) -> anyhow::Result<bool> {
        let Some(row) = self.rows.get(id).await? else {
            return Ok(false);
        };
        // Bytes first, row last: the row is the only record of the S3
        // upload id, so forgetting it before the abort succeeded would
        // orphan every part. Each step is idempotent for the retry.
        if let Some(uid) = &row.s3_upload_id {
            self.storage.abort_multipart(&row.object_key, uid).await?;
        }
        if row.tail_bytes > 0 || row.completed_at.is_none() {
            self.storage.delete(&layout::tus_tail(row.id)).await?;
        }
        // The object is the video's source once a video exists; that is the video's to delete.
        if row.video_id.is_none() && (row.completed_at.is_some() || row.concat == "partial") {
            self.storage.delete(&row.object_key).await?;
        }
        self.rows.delete(row.id, lease.holder()).await?;
        Ok(true)
    }

    async fn set_video(&self, id: Uuid, video_id: Uuid) -> anyhow::Result<()> {
        self.rows.set_video(id, video_id).await
    }

    async fn finals_waiting_on(&self, partial: Uuid) -> anyhow::Result<Vec<Uuid>> {
        self.rows.finals_waiting_on(partial).await
    }

    async fn expired(&self, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        self.rows.expired(limit).await
    }

    async fn stranded(&self, older_than: Duration, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        self.rows.stranded(older_than, limit).await
    }
}

/// The hashers a PATCH body runs through: the one its header names, or —
/// for a trailer, whose algorithm is known only after the body — all of them.
struct Verifiers(Vec<(Algorithm, ChunkHasher)>);

impl Verifiers {
    fn for_plan(plan: &ChecksumPlan) -> Self {
        let algorithms = match plan {
            ChecksumPlan::None => vec![],
            ChecksumPlan::Header(c) => vec![c.algorithm],
            ChecksumPlan::Trailer => vec![
                Algorithm::Sha1,
                Algorithm::Md5,
                Algorithm::Sha256,
                Algorithm::Crc32,
            ],
        };
        Self(
            algorithms
                .into_iter()
                .map(|a| (a, ChunkHasher::new(a)))
                .collect(),
        )
    }

    fn update(&mut self, data: &[u8]) {
        for (_, h) in &mut self.0 {
            h.update(data);
        }
    }

    fn digest(self, algorithm: Algorithm) -> Option<Vec<u8>> {
        self.0
            .into_iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, h)| h.finish())
    }
}
