//! Request paths the delivery tier refuses, before any cache lookup or
//! origin fetch: dot segments (`.` and `..`, also percent-encoded as
//! `%2e`), encoded separators (`%2f`, `%5c`) and backslashes.
//!
//! Why refuse rather than normalise: the edge keys its cache by path and
//! forwards the path to its parent, whose URL library resolves these forms
//! its own way. `/hls/../metrics` reached an edge's `/hls/` route, was
//! resolved to `/metrics` by the HTTP client, and answered with the origin's
//! metrics. No player asks for such a path, so a 400 costs nobody anything,
//! and one reading of the path, the literal one, is all that is left.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Problem;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnormalised {
    /// A `.` or `..` segment, literal or percent-encoded.
    DotSegment,
    /// `%2f` or `%5c`: a separator hidden inside a segment.
    EncodedSeparator,
    /// A raw `\`, which some servers read as `/`.
    Backslash,
}

impl Unnormalised {
    fn detail(self) -> &'static str {
        match self {
            Self::DotSegment => "the path has a '.' or '..' segment (maybe percent-encoded); ask for the object's own path",
            Self::EncodedSeparator => "the path has an encoded '/' or '\\' (%2F, %5C) inside a segment; ask for the object's own path",
            Self::Backslash => "the path has a '\\'; paths use '/' only",
        }
    }
}

/// The raw (still percent-encoded) path, checked segment by segment.
pub fn check(path: &str) -> Result<(), Unnormalised> {
    if path.contains('\\') {
        return Err(Unnormalised::Backslash);
    }
    // Every request passes here: without a '%' nothing is encoded, and a
    // dot segment needs a '/' or the start right before its '.'.
    if !path.contains('%') && !path.contains("/.") && !path.starts_with('.') {
        return Ok(());
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(Unnormalised::EncodedSeparator);
    }
    let dots = |segment: &str| segment.replace("%2e", ".");
    if lower.split('/').map(dots).any(|s| s == "." || s == "..") {
        return Err(Unnormalised::DotSegment);
    }
    Ok(())
}

/// Middleware: a 400 problem for a path [`check`] refuses, before the
/// request reaches a route (and so a cache or an origin).
pub async fn refuse_unnormalised(req: Request, next: Next) -> Response {
    match check(req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            tracing::info!(path = req.uri().path(), reason = ?why, "refused a path that is not normalised");
            Problem::new(StatusCode::BAD_REQUEST, "path-not-normalised", "Path not normalised", why.detail()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_encoded_separators_and_backslashes_are_refused() {
        for ok in ["/hls/0190/720p/seg_00001.m4s", "/hls/a/.hidden", "/hls/a/b..c.m3u8", "/", "/hls/a/...", "/metrics"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("/hls/../metrics", Unnormalised::DotSegment),
            ("/hls/./x", Unnormalised::DotSegment),
            ("/hls/a/..", Unnormalised::DotSegment),
            ("/hls/%2e%2e/metrics", Unnormalised::DotSegment),
            ("/hls/%2E./metrics", Unnormalised::DotSegment),
            ("/hls/.%2e/metrics", Unnormalised::DotSegment),
            ("/hls/%2e/x", Unnormalised::DotSegment),
            ("/hls/a%2fb", Unnormalised::EncodedSeparator),
            ("/hls/a%2Fb", Unnormalised::EncodedSeparator),
            ("/hls/a%5cb", Unnormalised::EncodedSeparator),
            ("/hls/a\\..\\metrics", Unnormalised::Backslash),
        ] {
            assert_eq!(check(bad), Err(why), "{bad}");
        }
    }
}
