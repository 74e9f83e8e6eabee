//! The problem catalogue of upload-http2: every refusal, its status and a
//! stable code. Internal causes are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::budget::Exhausted;
use shared::error::Problem;
use shared::pace::Breach;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("empty body")]
    EmptyBody,
    #[error("upload larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("invalid multipart body: {0}")]
    BadMultipart(String),
    #[error("invalid field: {0}")]
    InvalidField(String),
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    #[error("upload stalled")]
    Stalled { secs: u64 },
    #[error("upload too slow or too long")]
    CutOff(Breach),
    #[error("upload budget spent")]
    Busy(Exhausted),
    #[error("video not found")]
    VideoNotFound(uuid::Uuid),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("refused caller")]
    Denied(shared::auth::Denied),
    #[error("storage unavailable")]
    Storage(anyhow::Error),
    #[error("purge channel unavailable")]
    Purge(anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<shared::auth::Denied> for ApiError {
    fn from(d: shared::auth::Denied) -> Self {
        ApiError::Denied(d)
    }
}

impl From<Breach> for ApiError {
    fn from(b: Breach) -> Self {
        match b {
            Breach::Idle { after } => ApiError::Stalled { secs: after.as_secs() },
            other => ApiError::CutOff(other),
        }
    }
}

impl ApiError {
    pub fn to_problem(&self) -> Problem {
        use ApiError::*;
        match self {
            UnsupportedMediaType(ct) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("Content-Type {ct:?} is not accepted. Send the video as the body with video/* or application/octet-stream, or as multipart/form-data with a `file` part."),
            ),
            EmptyBody => Problem::new(StatusCode::BAD_REQUEST, "empty-body", "Empty upload", "The request carried no video bytes; nothing was stored."),
            TooLarge { max } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "upload-too-large",
                "Upload too large",
                format!("Uploads are limited to {max} bytes; nothing was stored. Use the resumable upload API for larger files, or compress the video."),
            )
            .with("max_bytes", *max),
            BadMultipart(why) => Problem::new(StatusCode::BAD_REQUEST, "invalid-multipart", "Malformed multipart body", format!("{why}; nothing was stored.")),
            InvalidField(why) => Problem::new(StatusCode::BAD_REQUEST, "invalid-field", "Invalid field", why.clone()),
            Interrupted(why) => Problem::new(StatusCode::BAD_REQUEST, "upload-interrupted", "Upload interrupted", format!("The body ended early ({why}); nothing was stored. Retry the upload.")),
            Stalled { secs } => Problem::new(StatusCode::REQUEST_TIMEOUT, "upload-stalled", "Upload stalled", format!("No bytes arrived for {secs} s; the partial upload was discarded. Retry, or use the resumable upload API on unreliable networks.")),
            CutOff(breach) => {
                let (code, title) = match breach {
                    Breach::Deadline { .. } => ("upload-deadline", "Upload took too long"),
                    _ => ("upload-too-slow", "Upload too slow"),
                };
                Problem::new(StatusCode::REQUEST_TIMEOUT, code, title, format!("The upload was cut off: {breach}; nothing was stored. Retry on a faster connection, or use the resumable upload API (/api/v1/uploads), which keeps what arrived."))
            }
            Busy(exhausted) => exhausted.to_problem(),
            VideoNotFound(id) => Problem::new(StatusCode::NOT_FOUND, "video-not-found", "Video not found", format!("There is no video {id}.")),
            InvalidQuery(why) => Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter", why.clone()),
            Denied(d) => d.0.clone(),
            Storage(e) => Problem::unavailable("object storage", e),
            Purge(e) => {
                tracing::error!(error = format!("{e:#}"), "could not publish an edge purge");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "purge-unavailable",
                    "Edges could not be purged",
                    "The change is stored, but the edges could not be told (their purge channel, Redis, is unavailable). Repeat the request to finish.",
                )
            }
            Internal(e) => Problem::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Denied(d) = self {
            return d.into_response();
        }
        let mut res = self.to_problem().into_response();
        if let ApiError::Busy(exhausted) = &self {
            exhausted.add_retry_after(&mut res);
        }
        res
    }
}
