//! What happens when an upload has all its bytes: the object is completed
//! and checked, and the upload becomes a video through the same
//! `register_and_enqueue` as upload-http2 — or, for a partial upload, every
//! final upload waiting on it is assembled.
//!
//! The video belongs to the upload's owner and has the visibility chosen
//! when the upload was created (both stored on the upload's row).
//!
//! Each step is idempotent, because a crash may cut it anywhere: the sweeper
//! finds uploads whose bytes are all in but that never became videos, and
//! runs the same code again.

use std::sync::Arc;
use std::time::Duration;

use shared::queue::Publisher;
use shared::storage::Stored;
use shared::videos::{register_and_enqueue, NewVideo, Videos};
use uuid::Uuid;

use crate::checksum::Algorithm;
use crate::error::TusError;
use crate::progress::{ProgressBoard, UploadProgress};
use crate::protocol::{Checksum, Metadata};
use crate::store::{DataStore, Kind, Lease, Upload};

/// How long an assembly waits for a final upload's lease: another partial's
/// request may be assembling it right now.
const ASSEMBLY_LOCK_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Finisher {
    pub store: Arc<dyn DataStore>,
    pub videos: Videos,
    pub publisher: Arc<Publisher>,
    pub board: ProgressBoard,
}

/// The video an upload became, as a path (the `Link: rel="video"` target).
pub fn video_path(video_id: Uuid) -> String {
    format!("/api/v1/videos/{video_id}")
}

/// The title, description and type a video takes from tus metadata. The
/// keys are the ones tus clients and Uppy send (`filename`, `filetype`),
/// plus our own `title` and `description`.
pub struct VideoFields {
    pub title: String,
    pub description: String,
    pub content_type: String,
    /// The whole file's SHA-256 in hex, when the client sent `checksum: sha256 <base64>`.
    pub sha256: Option<String>,
}

impl VideoFields {
    pub const MAX_TITLE_CHARS: usize = 200;

    /// Checked at creation, so a bad value is refused before any byte is stored.
    pub fn from_metadata(m: &Metadata) -> Result<Self, TusError> {
        let bad = |why: String| TusError::BadHeader("upload-metadata".into(), why);
        let title = m
            .text("title")
            .or_else(|| m.text("filename"))
            .or_else(|| m.text("name"))
            .map(|t| t.trim().to_owned());
        if let Some(t) = &title {
            if t.chars().count() > Self::MAX_TITLE_CHARS || t.chars().any(char::is_control) {
                return Err(bad(format!(
                    "title must be at most {} characters with no control characters",
                    Self::MAX_TITLE_CHARS
                )));
            }
        }
        let content_type = m
            .text("filetype")
            .or_else(|| m.text("type"))
            .unwrap_or_else(|| "application/octet-stream".into());
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(essence.starts_with("video/") || essence == "application/octet-stream") {
            return Err(TusError::NotVideo(content_type));
        }
        let sha256 = match m.text("checksum") {
            None => None,
            Some(raw) => {
                let c = Checksum::parse(&raw)
                    .map_err(|_| bad("checksum must be \"sha256 <base64 digest>\"".into()))?;
                if c.algorithm != Algorithm::Sha256 {
                    return Err(bad("the whole-file checksum must be sha256".into()));
                }
                Some(hex::encode(c.digest))
            }
        };
        Ok(Self {
            title: title.unwrap_or_else(|| "Untitled".into()),
            description: m.text("description").unwrap_or_default(),
            content_type: essence,
            sha256,
        })
    }
}

impl Finisher {
    /// Called with the upload's lease held, once its offset reached its length.
    /// Returns the video it became (None for a partial upload).
    pub async fn finish(
        &self,
        lease: &Lease,
        upload: &Upload,
    ) -> Result<Option<Uuid>, TusError> {
        let fields = VideoFields::from_metadata(&Metadata::parse(&upload.metadata)?)?;
        let stored = self
            .store
            .complete(lease, upload, fields.sha256.as_deref())
            .await?;
        if upload.kind == Kind::Partial {
            self.publish_done(upload, stored.size, None).await;
            for final_id in self.store.finals_waiting_on(upload.id).await? {
                if let Err(e) = self.assemble(final_id, ASSEMBLY_LOCK_WAIT).await {
                    tracing::warn!(%final_id, error = ?e, "final upload not assembled yet; the sweeper will retry");
                }
            }
            return Ok(None);
        }
        self.register(upload, stored, fields).await.map(Some)
    }

    /// Assembles a final upload if every partial is complete; a no-op
    /// otherwise (or when the final is gone). Waits up to `wait` for the final's lease.
    pub async fn assemble(&self, final_id: Uuid, wait: Duration) -> Result<Option<Uuid>, TusError> {
        let lease = match self.store.lease(final_id, wait).await {
            Ok(lease) => lease,
            Err(TusError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let res = self.assemble_leased(&lease, final_id).await;
        lease.release().await;
        res
    }

    /// The lease is the caller's: the sweeper assembles under the lease it already holds.
    pub async fn assemble_leased(
        &self,
        lease: &Lease,
        final_id: Uuid,
    ) -> Result<Option<Uuid>, TusError> {
        let Some(fin) = self.store.get(final_id).await? else {
            return Ok(None);
        };
        if fin.completed {
            return Ok(fin.video_id);
        }
        let Kind::Final(ids) = &fin.kind else {
            return Ok(None);
        };
        let mut partials = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store.get(*id).await? {
                Some(p) if p.completed => partials.push(p),
                _ => return Ok(None),
            }
        }
        let fields = VideoFields::from_metadata(&Metadata::parse(&fin.metadata)?)?;
        let stored = self
            .store
            .assemble(lease, &fin, &partials, fields.sha256.as_deref())
            .await?;
        self.register(&fin, stored, fields).await.map(Some)
    }

    async fn register(
        &self,
        upload: &Upload,
        stored: Stored,
        fields: VideoFields,
    ) -> Result<Uuid, TusError> {
        // The video takes the upload's id: one id to follow from upload to playback.
        let id = upload.id;
        let size = stored.size;
        if self.videos.get(id).await?.is_none() {
            // An upload from before owners existed gives its video none:
            // such a video belongs to the admins, like the rows of that time.
            let new = NewVideo {
                id,
                owner_id: upload.owner_id,
                visibility: upload.visibility,
                title: fields.title,
                description: fields.description,
                content_type: fields.content_type,
                stored,
            };
            let registered = register_and_enqueue(&self.videos, &self.publisher, new).await?;
            tracing::info!(video_id = %id, size, enqueued = registered.enqueued, trace_id = shared::telemetry::current_trace_id(), "tus upload became a video");
        }
        self.store.set_video(upload.id, id).await?;
        self.publish_done(upload, size, Some(id)).await;
        Ok(id)
    }

    async fn publish_done(&self, upload: &Upload, length: u64, video: Option<Uuid>) {
        let p = UploadProgress {
            offset: length,
            length: Some(length),
            bytes_per_second: 0,
            complete: true,
            video: video.map(video_path),
        };
        self.board.publish(upload.id, &p).await;
    }
}
