//! S3 object storage: the client built from config, the few calls the
//! platform makes, and [`MultipartWriter`], which streams an unbounded body
//! into S3 in bounded memory.
//!
//! Works with AWS, MinIO and Garage: endpoint, region, credentials and
//! path-style addressing all come from config. The SDK's newer default of
//! checksumming every request is turned down to "when required", because not
//! every S3-compatible server accepts the extra trailers.

use std::path::Path;

use anyhow::{bail, Context};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::configuration::{ByteSize, Env, Secret};

/// How S3 dates are formatted (the origin sends Last-Modified in HTTP-date form).
pub use aws_sdk_s3::primitives::DateTimeFormat as DateFormat;
pub use aws_sdk_s3::primitives::DateTime as S3DateTime;

/// S3 refuses parts under 5 MiB (except the last) and more than 10 000 parts.
pub const MIN_PART_BYTES: u64 = 5 << 20;
pub const MAX_PARTS: u64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub bucket: String,
    pub force_path_style: bool,
}

impl S3Settings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            endpoint: env.required("S3_ENDPOINT", "S3 endpoint URL, e.g. http://127.0.0.1:3900"),
            region: env.optional("S3_REGION", "garage", "S3 region name"),
            access_key_id: env.required("S3_ACCESS_KEY_ID", "S3 access key id"),
            secret_access_key: env.required("S3_SECRET_ACCESS_KEY", "S3 secret key"),
            bucket: env.optional("S3_BUCKET", "videos", "bucket holding sources and HLS outputs"),
            force_path_style: env.optional("S3_FORCE_PATH_STYLE", "true", "path-style URLs (MinIO, Garage)"),
        }
    }

    pub fn client(&self) -> Client {
        let creds = Credentials::new(&self.access_key_id, self.secret_access_key.expose(), None, None, "config");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .force_path_style(self.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Client::from_conf(conf)
    }

    pub fn store(&self) -> Storage {
        Storage { client: self.client(), bucket: self.bucket.clone() }
    }
}

/// What a GET found. Matched and moved out at once, so the size gap between
/// variants costs nothing that boxing would save.
#[allow(clippy::large_enum_variant)]
pub enum Fetched {
    Object(GetObjectOutput),
    Missing,
    RangeNotSatisfiable,
}

/// One bucket, and the calls the platform makes on it.
#[derive(Clone, Debug)]
pub struct Storage {
    client: Client,
    bucket: String,
}

impl Storage {
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the bucket if missing; two services racing here both succeed.
    pub async fn ensure_bucket(&self) -> anyhow::Result<()> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()) {
                    return Ok(());
                }
                // Some servers refuse CreateBucket to keys that may use an existing bucket.
                self.client.head_bucket().bucket(&self.bucket).send().await.map(|_| ()).map_err(|_| {
                    anyhow::Error::new(e).context(format!("bucket {} is missing and could not be created", self.bucket))
                })
            }
        }
    }

    /// Cheap reachability probe for readiness.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.client.head_bucket().bucket(&self.bucket).send().await.context("HeadBucket")?;
        Ok(())
    }

    pub async fn put_bytes(&self, key: &str, body: Bytes, content_type: &str) -> anyhow::Result<()> {
        self.put(key, ByteStream::from(body), content_type).await
    }

    pub async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> anyhow::Result<()> {
        let body = ByteStream::from_path(path).await.with_context(|| format!("reading {}", path.display()))?;
        self.put(key, body, content_type).await
    }

    async fn put(&self, key: &str, body: ByteStream, content_type: &str) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("PutObject {key}"))?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.with_context(|| format!("DeleteObject {key}"))?;
        Ok(())
    }

    /// The object, or None when it does not exist.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<GetObjectOutput>> {
        match self.get_range(key, None).await? {
            Fetched::Object(out) => Ok(Some(out)),
            Fetched::Missing => Ok(None),
            Fetched::RangeNotSatisfiable => unreachable!("no range was asked for"),
        }
    }

    /// The object's metadata (ETag, Last-Modified, length), or None when it
    /// does not exist: what a conditional request is answered from.
    pub async fn head(&self, key: &str) -> anyhow::Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("HeadObject {key}"))),
        }
    }

    /// The object, or the part of it an HTTP `Range` header asks for.
    pub async fn get_range(&self, key: &str, range: Option<&str>) -> anyhow::Result<Fetched> {
        match self.client.get_object().bucket(&self.bucket).key(key).set_range(range.map(str::to_owned)).send().await {
            Ok(out) => Ok(Fetched::Object(out)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(Fetched::Missing),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => Ok(Fetched::RangeNotSatisfiable),
            Err(e) => Err(anyhow::Error::new(e).context(format!("GetObject {key}"))),
        }
    }

    /// Streams an object to a local file without holding it in memory.
    pub async fn download_to_file(&self, key: &str, path: &Path) -> anyhow::Result<u64> {
        let out = self.get(key).await?.with_context(|| format!("object {key} does not exist"))?;
        let mut body = out.body.into_async_read();
        let mut file = tokio::fs::File::create(path).await?;
        let n = tokio::io::copy(&mut body, &mut file).await.with_context(|| format!("downloading {key}"))?;
        file.flush().await?;
        Ok(n)
    }

    /// Deletes every object under a prefix; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> anyhow::Result<usize> {
        self.delete_prefix_except(prefix, None).await
    }

    /// Deletes every object under `prefix` except those under `keep`.
    pub async fn delete_prefix_except(&self, prefix: &str, keep: Option<&str>) -> anyhow::Result<usize> {
        let mut keys = self.list_keys(prefix).await?;
        keys.retain(|k| keep.is_none_or(|keep| !k.starts_with(keep)));
        self.delete_keys(&keys).await?;
        Ok(keys.len())
    }

    /// Deletes the keys, 1000 (S3's batch limit) at a time.
    pub async fn delete_keys(&self, keys: &[String]) -> anyhow::Result<()> {
        for batch in keys.chunks(1000) {
            let ids = batch.iter().map(|k| ObjectIdentifier::builder().key(k).build()).collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build()?;
            let out = self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await.context("DeleteObjects")?;
            // A 200 can still carry per-key failures.
            if let Some(e) = out.errors().first() {
                anyhow::bail!("DeleteObjects failed for {} of {} keys, e.g. {:?}: {:?}", out.errors().len(), batch.len(), e.key(), e.message());
            }
        }
        Ok(())
    }

    pub async fn list_keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        self.keys_where(prefix, |_| true).await
    }

    /// Multipart uploads still open under a prefix (leaks show up here).
    pub async fn open_multipart_uploads(&self, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
        self.multipart_uploads_where(prefix, |_| true).await
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> anyhow::Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .with_context(|| format!("CreateMultipartUpload {key}"))?;
        Ok(out.upload_id().context("CreateMultipartUpload returned no upload id")?.to_owned())
    }

    /// Sends one part; the returned part (number and ETag) is what completion needs.
    pub async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> anyhow::Result<CompletedPart> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .with_context(|| format!("UploadPart {number} of {key}"))?;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_owned)).build())
    }

    /// Completes a multipart upload from its parts, in part-number order.
    pub async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<CompletedPart>) -> anyhow::Result<()> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .with_context(|| format!("CompleteMultipartUpload {key}"))?;
        Ok(())
    }

    /// The object's size, or None when it does not exist.
    pub async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.head(key).await?.and_then(|h| h.content_length()).map(|n| n as u64))
    }

    /// Keys under `prefix` last written before `cutoff`.
    pub async fn keys_older_than(&self, prefix: &str, cutoff: std::time::SystemTime) -> anyhow::Result<Vec<String>> {
        let cutoff = S3DateTime::from(cutoff);
        self.keys_where(prefix, |written| written.is_some_and(|t| *t < cutoff)).await
    }

    /// Every key under `prefix` whose last-modified time passes `keep`, every page.
    async fn keys_where(&self, prefix: &str, keep: impl Fn(Option<&S3DateTime>) -> bool) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.context("ListObjectsV2")?;
            keys.extend(page.contents().iter().filter(|o| keep(o.last_modified())).filter_map(|o| o.key().map(str::to_owned)));
        }
        Ok(keys)
    }

    /// Open multipart uploads under `prefix` started before `cutoff`, as (key, upload id).
    pub async fn multipart_uploads_older_than(&self, prefix: &str, cutoff: std::time::SystemTime) -> anyhow::Result<Vec<(String, String)>> {
        let cutoff = S3DateTime::from(cutoff);
        self.multipart_uploads_where(prefix, |started| started.is_some_and(|t| *t < cutoff)).await
    }

    /// Open multipart uploads under `prefix` whose start passes `keep`, every page.
    async fn multipart_uploads_where(&self, prefix: &str, keep: impl Fn(Option<&S3DateTime>) -> bool) -> anyhow::Result<Vec<(String, String)>> {
        let (mut out, mut key_marker, mut id_marker) = (Vec::new(), None::<String>, None::<String>);
        // Bounded: a listing that never ends is a server bug, not a reason to loop forever.
        for _ in 0..10_000 {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .context("ListMultipartUploads")?;
            out.extend(
                page.uploads()
                    .iter()
                    .filter(|u| keep(u.initiated()))
                    .filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned()))),
            );
            if !page.is_truncated().unwrap_or(false) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        Ok(out)
    }

    /// Asks the server to abort multipart uploads `days` after they start,
    /// unless the bucket already has lifecycle rules (an operator's, kept).
    /// Returns whether the rule is in place; servers without lifecycle
    /// support answer an error, which is the caller's to log.
    pub async fn expire_incomplete_multipart(&self, days: i32) -> anyhow::Result<bool> {
        use aws_sdk_s3::types::{AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter};
        match self.client.get_bucket_lifecycle_configuration().bucket(&self.bucket).send().await {
            Ok(existing) => return Ok(existing.rules().iter().any(|r| r.abort_incomplete_multipart_upload().is_some())),
            // Only "there are none" may lead to a PUT, which replaces every rule.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("GetBucketLifecycleConfiguration")),
        }
        let rule = LifecycleRule::builder()
            .id("abort-incomplete-multipart")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(AbortIncompleteMultipartUpload::builder().days_after_initiation(days).build())
            .build()
            .context("lifecycle rule")?;
        let config = BucketLifecycleConfiguration::builder().rules(rule).build().context("lifecycle configuration")?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(config)
            .send()
            .await
            .context("PutBucketLifecycleConfiguration")?;
        Ok(true)
    }

    /// Frees a multipart upload. One S3 no longer knows (aborted, or
    /// completed before a crash) is already free: every caller (tus
    /// termination, the writer's abort, the reconciler racing another
    /// replica) wants exactly that, so it is Ok here, once.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> anyhow::Result<()> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("AbortMultipartUpload {key}"))),
        }
    }
}

/// What a finished [`MultipartWriter`] stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// Streams bytes into one S3 multipart upload.
///
/// Memory is bounded by `part_size * (max_in_flight + 1)`: one part filling
/// while at most `max_in_flight` upload. `write` waits for an upload slot
/// before accepting more, which is the backpressure that slows a fast client
/// down to S3's pace instead of buffering. Dropped unfinished (a client that
/// went away cancels the handler future), it aborts the S3 upload in the
/// background, so no orphaned parts are left to bill.
pub struct MultipartWriter {
    storage: Storage,
    key: String,
    upload_id: String,
    part_size: usize,
    max_in_flight: usize,
    buf: BytesMut,
    next_part: i32,
    in_flight: JoinSet<anyhow::Result<CompletedPart>>,
    done: Vec<CompletedPart>,
    size: u64,
    hasher: Sha256,
    settled: bool,
}

impl MultipartWriter {
    pub async fn begin(storage: &Storage, key: &str, content_type: &str, part_size: ByteSize, max_in_flight: usize) -> anyhow::Result<Self> {
        if part_size.0 < MIN_PART_BYTES {
            bail!("part size {} is below S3's 5 MiB minimum", part_size.0);
        }
        let upload_id = storage.create_multipart(key, content_type).await?;
        Ok(Self {
            storage: storage.clone(),
            key: key.to_owned(),
            upload_id,
            part_size: part_size.0 as usize,
            max_in_flight: max_in_flight.max(1),
            buf: BytesMut::with_capacity(part_size.0 as usize),
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            size: 0,
            hasher: Sha256::new(),
            settled: false,
        })
    }

    /// The S3 upload id, for callers that must be able to abort it after a crash.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, mut chunk: Bytes) -> anyhow::Result<()> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        while !chunk.is_empty() {
            let take = (self.part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            if self.buf.len() == self.part_size {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> anyhow::Result<()> {
        while self.in_flight.len() >= self.max_in_flight {
            self.reap_one().await?;
        }
        let body = self.buf.split().freeze();
        self.buf.reserve(self.part_size);
        let (storage, key, upload_id) = (self.storage.clone(), self.key.clone(), self.upload_id.clone());
        let part_number = self.next_part;
        self.next_part += 1;
        if part_number as u64 > MAX_PARTS {
            bail!("upload needs more than {MAX_PARTS} parts; raise the part size");
        }
        self.in_flight.spawn(async move { storage.upload_part(&key, &upload_id, part_number, body).await });
        Ok(())
    }

    async fn reap_one(&mut self) -> anyhow::Result<()> {
        if let Some(res) = self.in_flight.join_next().await {
            self.done.push(res.context("part upload task panicked")??);
        }
        Ok(())
    }

    /// Uploads what is buffered and completes the object. An empty upload is
    /// an error: S3 cannot complete a multipart upload with no parts.
    pub async fn finish(mut self) -> anyhow::Result<Stored> {
        if self.size == 0 {
            bail!("nothing was written");
        }
        if !self.buf.is_empty() {
            self.flush_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.reap_one().await?;
        }
        self.done.sort_by_key(|p| p.part_number());
        self.storage.complete_multipart(&self.key, &self.upload_id, std::mem::take(&mut self.done)).await?;
        self.settled = true;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(Stored { key: self.key.clone(), size: self.size, sha256 })
    }

    /// Abandons the upload and frees its parts in S3.
    pub async fn abort(mut self) -> anyhow::Result<()> {
        self.settled = true;
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.storage.abort_multipart(&self.key, &self.upload_id).await
    }
}

impl Drop for MultipartWriter {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.in_flight.abort_all();
        let (storage, key, upload_id) = (self.storage.clone(), self.key.clone(), self.upload_id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match storage.abort_multipart(&key, &upload_id).await {
                    Ok(()) => tracing::info!(key, "aborted multipart upload of an abandoned request"),
                    Err(e) => tracing::error!(key, error = format!("{e:#}"), "could not abort abandoned multipart upload"),
                }
            });
        }
    }
}

/// Worst-case body memory one upload holds: the part filling plus those in flight.
pub fn upload_buffer_bytes(max_bytes: u64, preferred: ByteSize, parts_in_flight: usize) -> u64 {
    part_size_for(max_bytes, preferred).0 * (parts_in_flight.max(1) as u64 + 1)
}

/// Part size for an upload of at most `max_bytes`: at least `preferred`,
/// large enough that the object fits in S3's 10 000 parts.
pub fn part_size_for(max_bytes: u64, preferred: ByteSize) -> ByteSize {
    let needed = max_bytes.div_ceil(MAX_PARTS);
    ByteSize(preferred.0.max(needed).max(MIN_PART_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_so_the_largest_upload_fits_in_10000_parts() {
        assert_eq!(part_size_for(2 << 30, ByteSize(8 << 20)).0, 8 << 20);
        let big = part_size_for(200 << 30, ByteSize(8 << 20)).0;
        assert!(big * MAX_PARTS >= 200 << 30);
        assert_eq!(part_size_for(1, ByteSize(1)).0, MIN_PART_BYTES);
    }
}
