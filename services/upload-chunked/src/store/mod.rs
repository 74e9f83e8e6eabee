//! The storage side of tus, behind [`DataStore`]: the protocol handlers ask
//! for uploads, leases, appends, completion, assembly and termination, and
//! never see S3 keys, parts or SQL.
//!
//! - [`rows`] — upload state in PostgreSQL.
//! - [`lease`] — the per-upload writer lease (an expiring row, not a held connection).
//! - [`s3`] — [`s3::S3Store`], the implementation: bytes in S3, state in rows.
//! - [`append`] — one PATCH body streamed into S3 parts and the tail object.

pub mod append;
pub mod lease;
pub mod rows;
pub mod s3;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use shared::pace::{Breach, Pace};
use shared::storage::Stored;
use shared::videos::Visibility;
use time::OffsetDateTime;
use uuid::Uuid;

pub use lease::Lease;

use crate::error::TusError;
use crate::protocol::ChecksumPlan;

/// What kind of tus upload this is (concatenation extension).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Single,
    Partial,
    Final(Vec<Uuid>),
}

/// An upload as the protocol sees it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: Uuid,
    pub kind: Kind,
    /// None while deferred, or for a final upload whose partials' lengths are not all known.
    pub length: Option<u64>,
    pub offset: u64,
    pub metadata: String,
    pub expires_at: OffsetDateTime,
    pub completed: bool,
    pub video_id: Option<Uuid>,
    pub consumed: bool,
    /// Why a complete upload was refused (e.g. its whole-file checksum).
    pub failure: Option<String>,
    /// The principal that created it; None for uploads older than owners
    /// (only admins act on those).
    pub owner_id: Option<Uuid>,
    /// What the video it becomes will be.
    pub visibility: Visibility,
}

impl Upload {
    pub fn is_expired(&self) -> bool {
        !self.completed && self.expires_at < OffsetDateTime::now_utc()
    }

    pub fn is_final(&self) -> bool {
        matches!(self.kind, Kind::Final(_))
    }

    /// Every byte is in, but completion has not run yet.
    pub fn is_full(&self) -> bool {
        !self.completed && self.length == Some(self.offset)
    }
}

#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: Uuid,
    pub kind: Kind,
    pub length: Option<u64>,
    pub metadata: String,
    pub owner_id: Uuid,
    pub visibility: Visibility,
}

/// One PATCH (or creation-with-upload) body and how to treat it.
pub struct Chunk {
    pub body: Body,
    pub content_length: Option<u64>,
    pub checksum: ChecksumPlan,
    /// Called as bytes arrive (at most a few times a second) with the offset reached so far.
    pub on_progress: Arc<dyn Fn(u64, u64) + Send + Sync>,
    /// How fast the body must arrive; a breach cuts it off like a disconnect.
    pub pace: Pace,
}

/// What an append made durable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Appended {
    pub offset: u64,
    /// The client went away (or stalled) before the body ended; every byte
    /// received before the cut is kept unless a checksum could not be checked.
    pub interrupted: bool,
    /// The new Upload-Expires, when bytes were committed.
    pub expires_at: Option<OffsetDateTime>,
    /// Why the body was cut off, when the server did it (too slow, too long, silent).
    pub breach: Option<Breach>,
}

#[async_trait]
pub trait DataStore: Send + Sync + 'static {
    async fn create(&self, new: NewUpload) -> anyhow::Result<Upload>;
    async fn get(&self, id: Uuid) -> anyhow::Result<Option<Upload>>;
    /// The upload's writer lease, waiting at most `wait` for another writer
    /// (`TusError::Locked` after that; `TusError::NotFound` for no such upload).
    async fn lease(&self, id: Uuid, wait: Duration) -> Result<Lease, TusError>;
    async fn declare_length(
        &self,
        lease: &Lease,
        upload: &Upload,
        length: u64,
    ) -> anyhow::Result<()>;
    /// Appends at the upload's current offset. Refusals (checksum, overflow) store nothing.
    async fn append(
        &self,
        lease: &Lease,
        upload: &Upload,
        chunk: Chunk,
    ) -> Result<Appended, TusError>;
    /// Completes the object of a full upload and verifies its size (and its
    /// SHA-256, when the client gave one). Idempotent.
    async fn complete(
        &self,
        lease: &Lease,
        upload: &Upload,
        expect_sha256: Option<&str>,
    ) -> Result<Stored, TusError>;
    /// Builds a final upload's object from its complete partials, in order.
    async fn assemble(
        &self,
        lease: &Lease,
        final_upload: &Upload,
        partials: &[Upload],
        expect_sha256: Option<&str>,
    ) -> Result<Stored, TusError>;
    /// Frees every byte the upload holds, then forgets it; false when there
    /// is no such upload. A video it became is not touched. If any byte
    /// cannot be freed the row stays, so the bytes are never orphaned and the
    /// termination (or the sweeper) can try again.
    async fn terminate(&self, lease: &Lease, id: Uuid) -> anyhow::Result<bool>;
    async fn set_video(&self, id: Uuid, video_id: Uuid) -> anyhow::Result<()>;
    async fn finals_waiting_on(&self, partial: Uuid) -> anyhow::Result<Vec<Uuid>>;
    /// Unfinished (or unassembled partial) uploads past their expiry.
    async fn expired(&self, limit: i64) -> anyhow::Result<Vec<Uuid>>;
    /// Uploads whose completion was cut short by a crash.
    async fn stranded(&self, older_than: Duration, limit: i64) -> anyhow::Result<Vec<Uuid>>;
}
