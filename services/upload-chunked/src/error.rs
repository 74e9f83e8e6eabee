//! Every way a tus request can fail, each tied to one status and one stable
//! code (`/problems/{code}`). A refusal is decided before stored state is
//! touched, so the body always says "nothing was changed" truthfully.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::auth::Denied;
use shared::budget::Exhausted;
use shared::error::Problem;
use shared::pace::Breach;

use crate::protocol::{names, TUS_VERSION};
use crate::store::rows::LeaseLost;

/// When a client may retry a termination that could not free the bytes.
const TERMINATION_RETRY_AFTER_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum TusError {
    #[error("unsupported tus version")]
    UnsupportedVersion(String),
    #[error("missing header")]
    MissingHeader(&'static str),
    #[error("bad header")]
    BadHeader(String, String),
    #[error("length")]
    LengthRequired,
    #[error("length and defer")]
    LengthAndDefer,
    #[error("empty")]
    EmptyUpload,
    #[error("too large")]
    TooLarge { max: u64 },
    #[error("exceeds length")]
    ExceedsLength { remaining: u64 },
    #[error("content type")]
    WrongContentType,
    #[error("not a video")]
    NotVideo(String),
    #[error("offset mismatch")]
    OffsetMismatch { expected: u64, got: u64 },
    /// No key, where one is needed (401 with its challenge). Boxed: a
    /// problem is large, and every tus result carries this error type.
    #[error("denied")]
    Denied(Box<Denied>),
    #[error("bad visibility")]
    BadVisibility(String),
    /// Also the answer for another principal's upload, so ids cannot be probed.
    #[error("not found")]
    NotFound,
    #[error("expired")]
    Expired,
    #[error("complete")]
    AlreadyComplete,
    #[error("final")]
    FinalNotWritable,
    #[error("length already set")]
    LengthAlreadySet,
    #[error("length below offset")]
    LengthBelowOffset { offset: u64 },
    #[error("locked")]
    Locked,
    #[error("checksum algorithm")]
    UnsupportedChecksum(String),
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("trailer missing")]
    TrailerMissing,
    #[error("whole-file checksum mismatch")]
    FileChecksumMismatch,
    #[error("concat")]
    BadConcat(String),
    #[error("final with length")]
    FinalWithLength,
    #[error("method")]
    MethodNotAllowed(String),
    #[error("refused earlier")]
    Refused(String),
    #[error("busy")]
    Busy(Exhausted),
    #[error("cut off")]
    CutOff { breach: Breach, offset: u64 },
    #[error("lease lost")]
    LeaseLost,
    #[error("termination failed")]
    NotTerminated(anyhow::Error),
    #[error("internal")]
    Internal(anyhow::Error),
}

/// Storage errors become 500s, except a fenced write that found the lease
/// in other hands, which the client can act on.
impl From<anyhow::Error> for TusError {
    fn from(e: anyhow::Error) -> Self {
        if e.downcast_ref::<LeaseLost>().is_some() {
            Self::LeaseLost
        } else {
            Self::Internal(e)
        }
    }
}

impl From<Denied> for TusError {
    fn from(d: Denied) -> Self {
        Self::Denied(Box::new(d))
    }
}

/// The tus-specific "460 Checksum Mismatch".
pub const CHECKSUM_MISMATCH: u16 = 460;

impl TusError {
    pub fn to_problem(&self) -> Problem {
        use StatusCode as S;
        let p = |status: S, code: &str, title: &str, detail: String| {
            Problem::new(status, code, title, detail)
        };
        match self {
            Self::UnsupportedVersion(v) => p(
                S::PRECONDITION_FAILED,
                "tus-version-unsupported",
                "Unsupported tus version",
                format!("Tus-Resumable was {v}; this server speaks tus {TUS_VERSION}. Send Tus-Resumable: {TUS_VERSION}."),
            ),
            Self::MissingHeader(h) => p(S::BAD_REQUEST, "tus-header-missing", "Required header missing", format!("This request needs the {h} header; nothing was changed.")),
            Self::BadHeader(h, why) => p(S::BAD_REQUEST, "tus-header-invalid", "Invalid header", format!("{h} {why}; nothing was changed.")).with("header", h.as_str()),
            Self::LengthRequired => p(
                S::BAD_REQUEST,
                "tus-length-required",
                "Upload length required",
                "Send Upload-Length with the size in bytes, or Upload-Defer-Length: 1 to give it later.".into(),
            ),
            Self::LengthAndDefer => p(S::BAD_REQUEST, "tus-length-conflict", "Conflicting length headers", "Send Upload-Length or Upload-Defer-Length, not both.".into()),
            Self::EmptyUpload => p(S::BAD_REQUEST, "tus-upload-empty", "Empty upload", "Upload-Length is 0; a video needs at least one byte.".into()),
            Self::TooLarge { max } => p(S::PAYLOAD_TOO_LARGE, "tus-upload-too-large", "Upload too large", format!("This server accepts uploads of at most {max} bytes (Tus-Max-Size); nothing was stored."))
                .with("max_bytes", *max),
            Self::ExceedsLength { remaining } => p(
                S::PAYLOAD_TOO_LARGE,
                "tus-chunk-exceeds-length",
                "Chunk exceeds upload length",
                format!("Only {remaining} more bytes fit in this upload's Upload-Length; the chunk was discarded."),
            )
            .with("remaining_bytes", *remaining),
            Self::WrongContentType => p(
                S::UNSUPPORTED_MEDIA_TYPE,
                "tus-content-type",
                "Wrong content type",
                "PATCH bodies must be sent with Content-Type: application/offset+octet-stream.".into(),
            ),
            Self::NotVideo(t) => p(S::UNSUPPORTED_MEDIA_TYPE, "tus-not-video", "Not a video", format!("The metadata says the file is {t}; only video/* and application/octet-stream are accepted.")),
            Self::OffsetMismatch { expected, got } => p(
                S::CONFLICT,
                "tus-offset-mismatch",
                "Offset mismatch",
                format!("Upload-Offset was {got} but the upload holds {expected} bytes. Send HEAD to learn the offset, then resume from it."),
            )
            .with("upload_offset", *expected),
            Self::Denied(d) => d.0.clone(),
            Self::BadVisibility(why) => p(
                S::BAD_REQUEST,
                "tus-visibility-invalid",
                "Invalid visibility",
                format!("The Upload-Metadata {why}; nothing was created. Leave it out for public."),
            ),
            Self::NotFound => p(S::NOT_FOUND, "tus-upload-not-found", "Upload not found", "No upload has this id; it may have been terminated or reclaimed after expiring.".into()),
            Self::Expired => p(S::GONE, "tus-upload-expired", "Upload expired", "This upload passed its Upload-Expires time and can no longer be resumed; start a new one.".into()),
            Self::AlreadyComplete => p(S::FORBIDDEN, "tus-upload-complete", "Upload already complete", "Every byte of this upload has been received; it cannot be changed.".into()),
            Self::FinalNotWritable => p(S::FORBIDDEN, "tus-final-not-writable", "Final upload is not writable", "A final (concatenated) upload is assembled from its partial uploads; PATCH those instead.".into()),
            Self::LengthAlreadySet => p(S::BAD_REQUEST, "tus-length-already-set", "Upload length already set", "Upload-Length can be given only once for a deferred upload.".into()),
            Self::LengthBelowOffset { offset } => p(S::BAD_REQUEST, "tus-length-below-offset", "Upload length too small", format!("The upload already holds {offset} bytes; Upload-Length cannot be smaller."))
                .with("upload_offset", *offset),
            Self::Locked => p(S::LOCKED, "tus-upload-locked", "Upload busy", "Another request is writing to this upload. Retry in a moment; no bytes of this request were stored.".into()),
            Self::UnsupportedChecksum(a) => p(
                S::BAD_REQUEST,
                "tus-checksum-unsupported",
                "Unsupported checksum algorithm",
                format!("{a:?} is not supported; use one of sha1, md5, sha256, crc32 (Tus-Checksum-Algorithm)."),
            ),
            Self::ChecksumMismatch => Problem::new(
                S::from_u16(CHECKSUM_MISMATCH).expect("valid status"),
                "tus-checksum-mismatch",
                "Checksum mismatch",
                "The chunk does not match its Upload-Checksum; it was discarded and the offset is unchanged. Send it again.",
            ),
            Self::TrailerMissing => p(
                S::BAD_REQUEST,
                "tus-checksum-trailer-missing",
                "Checksum trailer missing",
                "The request announced an Upload-Checksum trailer but sent none; the chunk was discarded.".into(),
            ),
            Self::FileChecksumMismatch => Problem::new(
                S::from_u16(CHECKSUM_MISMATCH).expect("valid status"),
                "tus-file-checksum-mismatch",
                "Whole-file checksum mismatch",
                "Every byte arrived, but the file does not match the checksum in its metadata. It was discarded; upload it again.",
            ),
            Self::BadConcat(why) => p(S::BAD_REQUEST, "tus-concat-invalid", "Invalid concatenation", format!("{why}; nothing was created.")),
            Self::FinalWithLength => p(S::BAD_REQUEST, "tus-concat-length", "Final upload with a length", "A final upload's length is the sum of its partials; do not send Upload-Length.".into()),
            Self::MethodNotAllowed(m) => p(S::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed", format!("{m} is not a tus operation on an upload; use HEAD, PATCH or DELETE.")),
            Self::Refused(why) => p(S::GONE, "tus-upload-refused", "Upload refused", format!("This upload was refused when it completed: {why}. Start a new upload.")),
            Self::Busy(exhausted) => exhausted.to_problem(),
            Self::CutOff { breach, offset } => {
                let (code, title) = match breach {
                    Breach::Deadline { .. } => ("tus-request-deadline", "Request took too long"),
                    _ => ("tus-upload-too-slow", "Upload too slow"),
                };
                p(S::REQUEST_TIMEOUT, code, title, format!("The request was cut off: {breach}. The bytes it delivered are kept (unless a checksum could not be checked); the upload now holds {offset} bytes. Resume from Upload-Offset {offset}."))
                    .with("upload_offset", *offset)
            }
            Self::LeaseLost => p(
                S::LOCKED,
                "tus-upload-lease-lost",
                "Upload taken over",
                "This request lost its hold on the upload (it stalled past the lease time) and another request may be writing it; bytes not yet stored were dropped. Send HEAD for the offset, then resume.".into(),
            ),
            Self::NotTerminated(e) => {
                tracing::error!(error = format!("{e:#}"), "termination could not free the upload's bytes");
                p(
                    S::SERVICE_UNAVAILABLE,
                    "tus-termination-failed",
                    "Upload not terminated yet",
                    format!("Object storage did not free this upload's bytes, so the upload is kept (nothing is orphaned). Send DELETE again after {TERMINATION_RETRY_AFTER_SECS} s; expired uploads are also reclaimed in the background."),
                )
            }
            Self::Internal(e) => Problem::internal(e),
        }
    }
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        if let Self::Denied(d) = self {
            return (*d).into_response();
        }
        let mut res = self.to_problem().into_response();
        match &self {
            Self::UnsupportedVersion(_) => {
                res.headers_mut()
                    .insert(names::TUS_VERSION, HeaderValue::from_static(TUS_VERSION));
            }
            Self::Busy(exhausted) => exhausted.add_retry_after(&mut res),
            Self::NotTerminated(_) => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(TERMINATION_RETRY_AFTER_SECS));
            }
            _ => {}
        }
        res
    }
}
