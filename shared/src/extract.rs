//! Path and query values parsed at the boundary ("parse, don't validate"):
//! handlers receive a [`VideoId`], never a raw string, and a malformed one is
//! answered with a problem body instead of axum's plain-text rejection.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use uuid::Uuid;

use crate::error::Problem;

/// A name safe in keys, paths and labels: 1 to `max_len` bytes of
/// `[A-Za-z0-9._-]`.
pub fn is_token(s: &str, max_len: usize) -> bool {
    !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A video id taken from the `{video_id}` (or `{id}`) path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoId(pub Uuid);

impl VideoId {
    // The error is the response itself; boxing it would only move the allocation.
    #[allow(clippy::result_large_err)]
    pub fn parse(raw: &str) -> Result<Self, Problem> {
        Uuid::try_parse(raw).map(VideoId).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-video-id",
                "Invalid video id",
                format!("{raw:?} is not a video id; ids are UUIDs such as 0190c6e2-1f6a-7c3e-9d1e-3b8f0a6b5c21"),
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VideoId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid-path", "Invalid path", e.body_text()))?;
        let raw = params
            .iter()
            .find(|(k, _)| k == "video_id" || k == "id")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Route misconfigured", "no id segment"))?;
        Self::parse(raw)
    }
}

impl std::fmt::Display for VideoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_ids_become_problems_naming_the_value() {
        let p = VideoId::parse("../../etc/passwd").unwrap_err();
        assert_eq!(p.status, 400);
        assert!(p.detail.contains("../../etc/passwd"));
        assert!(VideoId::parse("0190c6e2-1f6a-7c3e-9d1e-3b8f0a6b5c21").is_ok());
    }
}
