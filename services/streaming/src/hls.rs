//! GET/HEAD /hls/{video_id}/{*object}: one HLS object of a ready video.
//!
//! Readiness, and the folder of the attempt that committed, come from the
//! catalogue (cached briefly: `ready` is terminal, so a short TTL only delays
//! a deletion). Public paths never name the attempt, so URLs stay the same
//! whichever attempt won. The S3 body is streamed through, never buffered.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::Problem;
use shared::extract::VideoId;
use shared::layout;
use shared::storage::{Fetched, Storage};
use shared::videos::Videos;
use uuid::Uuid;

#[derive(Clone)]
pub struct OriginState {
    pub videos: Videos,
    pub storage: Storage,
    /// Ready videos and the S3 folder each is served from.
    pub ready: moka::future::Cache<Uuid, String>,
}

impl OriginState {
    pub fn new(videos: Videos, storage: Storage) -> Self {
        let ready = moka::future::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(10)).build();
        Self { videos, storage, ready }
    }
}

/// A relative object path inside a video's HLS prefix: at most two segments
/// of `[A-Za-z0-9._-]`, none starting with a dot, with a known extension.
/// Anything else (traversal, odd characters) is refused before S3 sees it.
/// Parsing also settles the object's content type and cache policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsObject {
    path: String,
    content_type: &'static str,
    cache_control: &'static str,
}

impl HlsObject {
    pub fn parse(raw: &str) -> Option<Self> {
        let parts: Vec<&str> = raw.split('/').collect();
        let ok = (1..=2).contains(&parts.len())
            && parts.iter().all(|p| {
                !p.is_empty() && !p.starts_with('.') && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        let (content_type, cache_control) = kind(raw).filter(|_| ok)?;
        Some(HlsObject { path: raw.to_owned(), content_type, cache_control })
    }
}

/// Content type and cache policy by extension. Segments and posters never
/// change once written; playlists of a VOD do not either, but get an hour so
/// a re-transcode (or a purge) takes effect without waiting a year.
fn kind(path: &str) -> Option<(&'static str, &'static str)> {
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    const PLAYLIST: &str = "public, max-age=3600";
    let content_type = layout::content_type(path)?;
    let cache = match path.rsplit('.').next()? {
        "m3u8" | "vtt" | "mpd" => PLAYLIST,
        _ => IMMUTABLE,
    };
    Some((content_type, cache))
}

fn not_found(detail: String) -> Response {
    Problem::new(StatusCode::NOT_FOUND, "hls-object-not-found", "Not found", detail).into_response()
}

pub async fn get_object(State(st): State<OriginState>, method: Method, Path((raw_id, raw_path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let id = match VideoId::parse(&raw_id) {
        Ok(VideoId(id)) => id,
        Err(p) => return p.into_response(),
    };
    let Some(object) = HlsObject::parse(&raw_path) else {
        return not_found(format!("{raw_path:?} is not an HLS object name"));
    };
    let prefix = match st.ready.get(&id).await {
        Some(prefix) => prefix,
        None => match st.videos.get(id).await {
            Ok(Some(v)) if v.status == "ready" => {
                let Some(prefix) = v.master_key.as_deref().and_then(layout::served_prefix).map(str::to_owned) else {
                    return Problem::internal(&anyhow::anyhow!("ready video {id} has no usable master_key {:?}", v.master_key)).into_response();
                };
                st.ready.insert(id, prefix.clone()).await;
                prefix
            }
            Ok(Some(v)) => return not_found(format!("video {id} is not ready (status: {})", v.status)),
            Ok(None) => return not_found(format!("there is no video {id}")),
            Err(e) => return Problem::unavailable("catalogue", &e).into_response(),
        },
    };
    let key = format!("{prefix}{}", object.path);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let out = match st.storage.get_range(&key, range).await {
        Ok(Fetched::Object(out)) => out,
        Ok(Fetched::Missing) => return not_found(format!("no object {}", object.path)),
        Ok(Fetched::RangeNotSatisfiable) => {
            return Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, "range-not-satisfiable", "Range not satisfiable", "the requested range is outside the object").into_response();
        }
        Err(e) => return Problem::unavailable("object storage", &e).into_response(),
    };
    let mut res = Response::builder()
        .status(if out.content_range().is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, object.content_type)
        .header(header::CACHE_CONTROL, object.cache_control)
        .header(header::ACCEPT_RANGES, "bytes");
    let h = res.headers_mut().expect("builder is valid");
    if let Some(len) = out.content_length() {
        h.insert(header::CONTENT_LENGTH, len.into());
    }
    for (name, value) in [(header::ETAG, out.e_tag()), (header::CONTENT_RANGE, out.content_range())] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    if let Some(lm) = out.last_modified().and_then(|t| t.fmt(shared::storage::DateFormat::HttpDate).ok()) {
        if let Ok(v) = HeaderValue::from_str(&lm) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    let body = if method == Method::HEAD { Body::empty() } else { Body::from_stream(tokio_util::io::ReaderStream::new(out.body.into_async_read())) };
    res.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_confined_to_the_video_prefix() {
        assert!(HlsObject::parse("master.m3u8").is_some());
        assert!(HlsObject::parse("720p/seg_00001.m4s").is_some());
        assert!(HlsObject::parse("../other/master.m3u8").is_none());
        assert!(HlsObject::parse("720p/.hidden.m4s").is_none());
        assert!(HlsObject::parse("a/b/c.m4s").is_none());
        assert!(HlsObject::parse("720p/seg.exe").is_none());
        assert!(HlsObject::parse("720p//x.m4s").is_none());
    }
}
