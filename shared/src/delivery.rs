//! The HTTP every delivery server (origin and edges) speaks alike, written
//! once: CORS for players on other origins, gzip for text manifests only
//! (segments are already compressed; gzipping them burns CPU for nothing),
//! conditional requests (304), the 416 answer, and per-viewer text.
//! [`paths`] refuses request paths that are not normalised.

pub mod paths;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};

use crate::error::Problem;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};

fn compressible(status: StatusCode, _: Version, headers: &HeaderMap, _: &axum::http::Extensions) -> bool {
    // A 206 is a slice of the identity bytes; compressing it would break the ranges.
    status == StatusCode::OK
        && !headers.contains_key(header::CONTENT_RANGE)
        && headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| crate::layout::TEXT_MANIFEST_TYPES.iter().any(|m| ct.starts_with(m)))
}

pub fn manifest_compression() -> CompressionLayer<fn(StatusCode, Version, &HeaderMap, &axum::http::Extensions) -> bool> {
    CompressionLayer::new().gzip(true).compress_when(compressible as fn(StatusCode, Version, &HeaderMap, &axum::http::Extensions) -> bool)
}

/// If-None-Match against an ETag, by weak comparison (RFC 9110 §8.8.3.2).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if_none_match.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// Whether the request carries a validator (so answering it may need one).
pub fn is_conditional(req: &HeaderMap) -> bool {
    req.contains_key(header::IF_NONE_MATCH) || req.contains_key(header::IF_MODIFIED_SINCE)
}

/// 304 when the request's validators match the representation's (`ETag`,
/// `Last-Modified`, and the `Cache-Control` the 304 repeats): If-None-Match
/// when present, else If-Modified-Since (RFC 9110 §13.2.2). HTTP dates have
/// whole seconds, so a Last-Modified with milliseconds compares by second.
pub fn not_modified(req: &HeaderMap, representation: &HeaderMap) -> Option<Response> {
    let text = |h: &HeaderMap, n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let matched = match text(req, header::IF_NONE_MATCH) {
        Some(inm) => etag_matches(&inm, &text(representation, header::ETAG)?),
        None => {
            let since = httpdate::parse_http_date(&text(req, header::IF_MODIFIED_SINCE)?).ok()?;
            let modified = httpdate::parse_http_date(&text(representation, header::LAST_MODIFIED)?).ok()?;
            modified <= since
        }
    };
    if !matched {
        return None;
    }
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    for name in [header::ETAG, header::CACHE_CONTROL, header::LAST_MODIFIED] {
        if let Some(v) = representation.get(&name) {
            r.headers_mut().insert(name, v.clone());
        }
    }
    Some(r)
}

/// 416, saying how long the object is.
pub fn range_not_satisfiable(total: u64) -> Response {
    let mut r = Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, "range-not-satisfiable", "Range not satisfiable", format!("the object is {total} bytes long")).into_response();
    r.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"));
    r
}

/// A per-viewer text response (a session's playlist): never stored by a shared cache.
pub fn private_text(content_type: &'static str, body: String, head: bool) -> Response {
    let len = body.len();
    let mut res = Response::new(if head { Body::empty() } else { Body::from(body) });
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(header::CONTENT_LENGTH, len.into());
    res
}

/// Any origin may play (objects are public); the headers a player sends and
/// the ones it may read (ranges, validators, cache and session diagnostics).
pub fn player_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ETAG,
            header::AGE,
            HeaderName::from_static("x-cache"),
            HeaderName::from_static("x-edge-region"),
            HeaderName::from_static("x-session-id"),
            HeaderName::from_static("x-bitrate-cap"),
        ])
        .max_age(std::time::Duration::from_secs(86400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\", \"x\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
