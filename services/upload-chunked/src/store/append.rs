//! One request body into an upload's S3 multipart upload.
//!
//! Bytes are cut at the upload's fixed part size. A full part is sent to S3
//! while the next one fills (at most `max_in_flight` at once, which bounds
//! memory to `part_size * (max_in_flight + 1)` per request and slows a fast
//! client to S3's pace). What is left when the body ends — less than a part,
//! which S3 would refuse unless it is the last — is written as the tail
//! object, and the next request, on any replica, starts by reading it back.
//!
//! Commits are ordered: a part is recorded only after it and every earlier
//! part are in S3, together with the SHA-256 midstate at its end, so the row
//! always describes a prefix of the upload that really is stored. In
//! "eager" mode each part is committed as soon as it lands (a crash loses at
//! most the parts in flight); otherwise nothing is committed until the
//! request has proven its bytes (checksum, length), and a refusal leaves the
//! row exactly as it was.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use shared::storage::{Fetched, Storage};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::lease::{Fence, Lease};
use super::rows::{LeaseLost, Part, Progress, Row, Rows};
use crate::checksum::ResumableSha256;

pub struct Appender {
    storage: Storage,
    rows: Rows,
    fence: Fence,
    id: Uuid,
    key: String,
    tail_key: String,
    s3_upload_id: Option<String>,
    part_size: usize,
    max_in_flight: usize,
    next_part: i32,
    buf: BytesMut,
    hasher: ResumableSha256,
    in_flight: VecDeque<(JoinHandle<anyhow::Result<Part>>, ResumableSha256)>,
    landed: Vec<Part>,
    landed_hash: Option<ResumableSha256>,
    eager: bool,
    expiry: Duration,
}

pub struct Target<'a> {
    pub storage: &'a Storage,
    pub rows: &'a Rows,
    pub lease: &'a Lease,
    pub tail_key: String,
    pub max_in_flight: usize,
    pub expiry: Duration,
}

impl Appender {
    /// Resumes from the row: hash midstate, next part number, and the tail read back into the buffer.
    pub async fn resume(t: Target<'_>, row: &Row, eager: bool) -> anyhow::Result<Self> {
        let part_size = row.part_size as usize;
        let mut buf = BytesMut::with_capacity(part_size);
        if row.tail_bytes > 0 {
            let range = format!("bytes=0-{}", row.tail_bytes - 1);
            let Fetched::Object(out) = t.storage.get_range(&t.tail_key, Some(&range)).await? else {
                anyhow::bail!("tail of upload {} is missing", row.id);
            };
            let tail = out.body.collect().await.context("reading tail body")?.into_bytes();
            anyhow::ensure!(
                tail.len() as i64 == row.tail_bytes,
                "tail of upload {} holds {} bytes, row says {}",
                row.id,
                tail.len(),
                row.tail_bytes
            );
            buf.extend_from_slice(&tail);
        }
        Ok(Self {
            storage: t.storage.clone(),
            rows: t.rows.clone(),
            fence: t.lease.fence(),
            id: row.id,
            key: row.object_key.clone(),
            tail_key: t.tail_key,
            s3_upload_id: row.s3_upload_id.clone(),
            part_size,
            max_in_flight: t.max_in_flight.max(1),
            next_part: (row.parts_bytes / row.part_size) as i32 + 1,
            buf,
            hasher: ResumableSha256::from_bytes(&row.sha256_state)?,
            in_flight: VecDeque::new(),
            landed: Vec::new(),
            landed_hash: None,
            eager,
            expiry: t.expiry,
        })
    }

    pub async fn push(&mut self, mut data: Bytes) -> anyhow::Result<()> {
        while !data.is_empty() {
            let take = (self.part_size - self.buf.len()).min(data.len());
            let piece = data.split_to(take);
            self.hasher.update(&piece);
            self.buf.extend_from_slice(&piece);
            if self.buf.len() == self.part_size {
                let body = self.buf.split().freeze();
                self.buf.reserve(self.part_size);
                self.send_part(body).await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self, body: Bytes) -> anyhow::Result<()> {
        // Part numbers after the committed ones are the new holder's now.
        if self.fence.is_lost() {
            return Err(LeaseLost.into());
        }
        let upload_id = self.multipart().await?;
        while self.in_flight.len() >= self.max_in_flight {
            self.land_front().await?;
        }
        let number = self.next_part;
        anyhow::ensure!(
            number as u64 <= shared::storage::MAX_PARTS,
            "upload needs more than {} parts",
            shared::storage::MAX_PARTS
        );
        self.next_part += 1;
        let (storage, key) = (self.storage.clone(), self.key.clone());
        let size = body.len() as u64;
        let task = tokio::spawn(async move {
            let part = storage.upload_part(&key, &upload_id, number, body).await?;
            Ok(Part { number, size, etag: part.e_tag().unwrap_or_default().to_owned() })
        });
        self.in_flight.push_back((task, self.hasher.clone()));
        Ok(())
    }

    /// The S3 multipart upload, created (and recorded) on the first part.
    async fn multipart(&mut self) -> anyhow::Result<String> {
        if let Some(id) = &self.s3_upload_id {
            return Ok(id.clone());
        }
        let id = self.storage.create_multipart(&self.key, "application/octet-stream").await?;
        self.rows.set_s3_upload(self.id, self.fence.holder(), &id).await?;
        self.s3_upload_id = Some(id.clone());
        Ok(id)
    }

    async fn land_front(&mut self) -> anyhow::Result<()> {
        let Some((task, hash_at_end)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let part = task.await.context("part upload task failed")??;
        self.landed.push(part);
        self.landed_hash = Some(hash_at_end);
        if self.eager {
            let sha256 = self.landed_hash.take().expect("just set");
            self.commit(sha256, 0).await?;
        }
        Ok(())
    }

    /// Returns the committed offset and the upload's new expiry.
    async fn commit(&mut self, sha256: ResumableSha256, tail_bytes: u64) -> anyhow::Result<(u64, OffsetDateTime)> {
        let progress = Progress { new_parts: std::mem::take(&mut self.landed), tail_bytes, sha256 };
        let expires = OffsetDateTime::now_utc() + self.expiry;
        Ok((self.rows.commit(self.id, self.fence.holder(), &progress, expires).await?, expires))
    }

    /// Makes everything received durable. `last` means the upload's length
    /// is reached, so the remainder goes out as the final (short) part
    /// instead of a tail.
    pub async fn finish(mut self, last: bool) -> anyhow::Result<(u64, OffsetDateTime)> {
        if last && !self.buf.is_empty() {
            let body = self.buf.split().freeze();
            self.send_part(body).await?;
        }
        while !self.in_flight.is_empty() {
            self.land_front().await?;
        }
        // Parts first, with no tail: from here the old tail is inside a
        // committed part and its object may be overwritten.
        if let Some(sha256) = self.landed_hash.take() {
            self.commit(sha256, 0).await?;
        }
        let tail = self.buf.split().freeze();
        if !tail.is_empty() {
            anyhow::ensure!(!self.fence.is_lost(), LeaseLost);
            // Overwrites the tail this request started from. If no part was
            // cut, the old tail is a prefix of the new one, so a crash before
            // the commit below leaves the row reading a correct (shorter) tail.
            self.storage
                .put_bytes(&self.tail_key, tail.clone(), "application/octet-stream")
                .await
                .with_context(|| format!("writing tail of upload {}", self.id))?;
        }
        let sha256 = self.hasher.clone();
        self.commit(sha256, tail.len() as u64).await
    }

    /// Drops the request's bytes: parts already sent are never committed and
    /// the next append reuses their part numbers, overwriting them.
    pub fn discard(mut self) {
        for (task, _) in self.in_flight.drain(..) {
            task.abort();
        }
    }
}
