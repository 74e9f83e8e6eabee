//! GET/HEAD /hls/{video_id}/{*object}: one HLS object of a ready video, with
//! the HTTP a cache and a browser player need: single/suffix/open ranges
//! (416 outside the object), ETag and Last-Modified validators (304),
//! exact media types and the configured Cache-Control. CORS and gzip are
//! layers (see `startup`). The master playlist is per viewer, on a route of
//! its own: [`crate::master`].
//!
//! Readiness, and the folder of the attempt that committed, come from the
//! catalogue (cached briefly: `ready` is terminal, so a short TTL only delays
//! a deletion). So does absence: an id the catalogue does not know is
//! answered 404 from memory for ORIGIN_NEGATIVE_TTL, so random
//! `/hls/<uuid>/…` URLs cost one query per id and TTL, not one each. Only
//! absence is remembered, not "not ready yet": ids are minted by the upload
//! services, so an unknown id does not become a video a moment later, while
//! a processing one does. Public paths never name the attempt. Bodies
//! stream from S3.
//!
//! Objects of unlisted and private videos need a playback token
//! ([`crate::access`]); a viewer's media playlist of such a video carries
//! the token on every URI, as it carries the session id.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use shared::error::Problem;
use shared::extract::VideoId;
use shared::layout;
use shared::playback::{token_in, ContentKeys, Signer, Verifier};
use shared::sessions::{Heartbeats, SessionId, Sessions};
use shared::storage::{Fetched, Storage};
use shared::videos::Videos;
use uuid::Uuid;

use crate::access::{mark_signed, request_token, Served};
use crate::cap::BitrateCap;
use crate::configuration::{CachePolicy, SteeringSettings};

#[derive(Clone)]
pub struct OriginState {
    pub videos: Videos,
    pub storage: Storage,
    /// Ready videos: the S3 folder each is served from, and who may see it.
    pub ready: moka::future::Cache<Uuid, Arc<Served>>,
    /// Ids the catalogue lately did not know (None: not remembered).
    pub absent: Option<moka::future::Cache<Uuid, ()>>,
    pub regions: Arc<shared::sessions::Regions>,
    /// Stored playlists by S3 key, bounded in bytes: a committed folder never
    /// changes, and every session's copy is rewritten from the stored one.
    pub playlists: moka::future::Cache<String, Arc<str>>,
    pub sessions: Sessions,
    pub heartbeats: Heartbeats,
    pub cache: Arc<CacheHeaders>,
    pub cap: Arc<BitrateCap>,
    pub steering: Arc<SteeringSettings>,
    pub metrics: crate::metrics::OriginMetrics,
    /// A client gets one session (one view) per video in this window.
    pub view_window: std::time::Duration,
    /// Signs play URLs of protected videos.
    pub signer: Signer,
    /// The signer's public halves: checks tokens on every protected object.
    pub verifier: Verifier,
    pub token_ttl: std::time::Duration,
    /// Content keys of encrypted videos, for `content.key`.
    pub keys: ContentKeys,
    /// live-ingest, whose live masters are rewritten per viewer here (None: not configured).
    pub live: Option<crate::live::LiveOrigin>,
}

/// The configured Cache-Control values, parsed once at start-up, where a
/// bad value fails loudly instead of being left out of every answer.
#[derive(Debug)]
pub struct CacheHeaders {
    playlist: HeaderValue,
    segment: HeaderValue,
}

impl CacheHeaders {
    pub fn new(policy: &CachePolicy) -> anyhow::Result<Self> {
        let parse = |name: &str, v: &str| HeaderValue::from_str(v).map_err(|_| anyhow::anyhow!("{name} {v:?} is not a valid header value"));
        Ok(Self { playlist: parse("CACHE_CONTROL_PLAYLIST", &policy.playlist)?, segment: parse("CACHE_CONTROL_SEGMENT", &policy.segment)? })
    }
}

/// A relative object path inside a video's HLS prefix: at most two segments
/// of `[A-Za-z0-9._-]`, none starting with a dot, with a known extension.
/// Anything else (traversal, odd characters) is refused before S3 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsObject {
    pub path: String,
    pub content_type: &'static str,
    pub playlist: bool,
}

impl HlsObject {
    pub fn parse(raw: &str) -> Option<Self> {
        let parts: Vec<&str> = raw.split('/').collect();
        let ok = (1..=2).contains(&parts.len())
            && parts.iter().all(|p| !p.starts_with('.') && shared::extract::is_token(p, 64));
        let content_type = layout::content_type(raw).filter(|_| ok)?;
        let playlist = layout::TEXT_MANIFEST_TYPES.contains(&content_type);
        Some(HlsObject { path: raw.to_owned(), content_type, playlist })
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ViewerQuery {
    pub sid: Option<String>,
    pub region: Option<String>,
    pub pathway: Option<String>,
}

pub fn not_found(detail: String) -> Response {
    Problem::new(StatusCode::NOT_FOUND, "hls-object-not-found", "Not found", detail).into_response()
}

impl OriginState {
    /// A ready video's folder and access facts, or the response that says
    /// why it is not served. A protected video that is not ready answers
    /// like a missing one: its status is its owner's business.
    pub async fn served(&self, id: Uuid) -> Result<Arc<Served>, Response> {
        if let Some(served) = self.ready.get(&id).await {
            return Ok(served);
        }
        let absent = || not_found(format!("there is no video {id}"));
        if self.absent.as_ref().is_some_and(|a| a.contains_key(&id)) {
            self.metrics.negative_hits.inc();
            return Err(absent());
        }
        self.metrics.catalogue_lookups.inc();
        match self.videos.get(id).await {
            Ok(Some(v)) if v.status == "ready" => {
                let Some(prefix) = v.master_key.as_deref().and_then(layout::served_prefix).map(str::to_owned) else {
                    return Err(Problem::internal(&anyhow::anyhow!("ready video {id} has no usable master_key {:?}", v.master_key)).into_response());
                };
                let served = Arc::new(Served { prefix, owner: v.owner_id, visibility: v.visibility, encrypted: v.encrypted });
                self.ready.insert(id, served.clone()).await;
                Ok(served)
            }
            Ok(Some(v)) if v.visibility.is_protected() => Err(absent()),
            Ok(Some(v)) => Err(not_found(format!("video {id} is not ready (status: {})", v.status))),
            Ok(None) => {
                if let Some(a) = &self.absent {
                    a.insert(id, ()).await;
                }
                Err(absent())
            }
            Err(e) => Err(Problem::unavailable("catalogue", &e).into_response()),
        }
    }

    /// A stored playlist's text, whole (playlists are small); None when it
    /// does not exist.
    pub async fn playlist(&self, key: &str) -> anyhow::Result<Option<Arc<str>>> {
        if let Some(text) = self.playlists.get(key).await {
            return Ok(Some(text));
        }
        let Some(out) = self.storage.get(key).await? else { return Ok(None) };
        let text: Arc<str> = String::from_utf8(out.body.collect().await?.into_bytes().to_vec())?.into();
        self.playlists.insert(key.to_owned(), text.clone()).await;
        Ok(Some(text))
    }

    fn cache_control(&self, object: &HlsObject) -> HeaderValue {
        let value = if object.playlist { &self.cache.playlist } else { &self.cache.segment };
        value.clone()
    }
}

pub async fn get_object(
    State(st): State<OriginState>,
    method: Method,
    Path((raw_id, raw_path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    Query(q): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Response {
    let id = match VideoId::parse(&raw_id) {
        Ok(VideoId(id)) => id,
        Err(p) => return p.into_response(),
    };
    let served = match st.served(id).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let res = match st.admit(id, &served, request_token(query.as_deref(), &headers)) {
        Ok(()) => {
            // Only a viewer's own token (in the query) is written into its
            // playlist; an edge's forwarded one asks for the shared object.
            let tag_token = token_in(query.as_deref()).filter(|_| served.is_protected());
            object(&st, &served, &raw_path, &method, &q, tag_token, &headers).await
        }
        Err(refused) => refused,
    };
    if served.is_protected() {
        mark_signed(res)
    } else {
        res
    }
}

/// One object of a served video, its access already checked.
async fn object(st: &OriginState, served: &Served, raw_path: &str, method: &Method, q: &ViewerQuery, token: Option<&str>, headers: &HeaderMap) -> Response {
    let Some(object) = HlsObject::parse(raw_path) else {
        return not_found(format!("{raw_path:?} is not an HLS object name"));
    };
    let key = format!("{}{}", served.prefix, object.path);
    let sid = q.sid.as_deref().and_then(SessionId::parse);
    if let Some(sid) = &sid {
        st.heartbeats.beat(sid);
    }
    // A viewer's playlist is rewritten so its URIs carry its session id and
    // token; it is read whole (playlists are small) and is private to the viewer.
    let viewer = shared::playlist::viewer_query(sid.as_ref().map(SessionId::as_str), token);
    if !viewer.is_empty() && object.content_type == layout::PLAYLIST_TYPE {
        return tagged_playlist(st, &key, &object, method, &viewer).await;
    }
    if let Some(res) = not_modified(st, &key, &object, headers).await {
        return res;
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let out = match st.storage.get_range(&key, range).await {
        Ok(Fetched::Object(out)) => out,
        Ok(Fetched::Missing) => return not_found(format!("no object {}", object.path)),
        Ok(Fetched::RangeNotSatisfiable) => {
            return shared::delivery::range_not_satisfiable(st.storage.size(&key).await.ok().flatten().unwrap_or(0));
        }
        Err(e) => return Problem::unavailable("object storage", &e).into_response(),
    };
    let mut res = Response::builder()
        .status(if out.content_range().is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, object.content_type)
        .header(header::ACCEPT_RANGES, "bytes");
    let h = res.headers_mut().expect("builder is valid");
    h.insert(header::CACHE_CONTROL, st.cache_control(&object));
    if let Some(len) = out.content_length() {
        h.insert(header::CONTENT_LENGTH, len.into());
    }
    for (name, value) in [(header::ETAG, out.e_tag()), (header::CONTENT_RANGE, out.content_range())] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    if let Some(lm) = out.last_modified().and_then(http_date) {
        h.insert(header::LAST_MODIFIED, lm);
    }
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        let egress = st.metrics.egress_bytes.clone();
        // Fused: the compression layer polls a body again after its end (issue 19).
        let stream = tokio_util::io::ReaderStream::new(out.body.into_async_read()).inspect_ok(move |b| egress.inc_by(b.len() as u64)).fuse();
        Body::from_stream(stream)
    };
    res.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn http_date(t: &shared::storage::S3DateTime) -> Option<HeaderValue> {
    t.fmt(shared::storage::DateFormat::HttpDate).ok().and_then(|s| HeaderValue::from_str(&s).ok())
}

/// 304 when the request's validators match the stored object, asked of S3
/// with a HEAD only when the request carries a validator: revalidations
/// are rare next to plain fetches.
async fn not_modified(st: &OriginState, key: &str, object: &HlsObject, req: &HeaderMap) -> Option<Response> {
    if !shared::delivery::is_conditional(req) {
        return None;
    }
    let head = st.storage.head(key).await.ok().flatten()?;
    let mut representation = HeaderMap::new();
    if let Some(e) = head.e_tag().and_then(|e| HeaderValue::from_str(e).ok()) {
        representation.insert(header::ETAG, e);
    }
    if let Some(lm) = head.last_modified().and_then(http_date) {
        representation.insert(header::LAST_MODIFIED, lm);
    }
    representation.insert(header::CACHE_CONTROL, st.cache_control(object));
    shared::delivery::not_modified(req, &representation)
}

async fn tagged_playlist(st: &OriginState, key: &str, object: &HlsObject, method: &Method, query: &str) -> Response {
    let text = match st.playlist(key).await {
        Ok(Some(t)) => t,
        Ok(None) => return not_found(format!("no object {}", object.path)),
        Err(e) => return Problem::unavailable("object storage", &e).into_response(),
    };
    let body = shared::playlist::tag_uris(&text, query);
    private_text(object.content_type, body, method, &st.metrics)
}

/// A per-viewer text response, its bytes counted as egress.
pub fn private_text(content_type: &'static str, body: String, method: &Method, metrics: &crate::metrics::OriginMetrics) -> Response {
    if *method != Method::HEAD {
        metrics.egress_bytes.inc_by(body.len() as u64);
    }
    shared::delivery::private_text(content_type, body, *method == Method::HEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_confined_to_the_video_prefix() {
        assert!(HlsObject::parse("master.m3u8").is_some_and(|o| o.playlist));
        assert!(HlsObject::parse("720p/seg_00001.m4s").is_some_and(|o| !o.playlist));
        assert!(HlsObject::parse("../other/master.m3u8").is_none());
        assert!(HlsObject::parse("720p/.hidden.m4s").is_none());
        assert!(HlsObject::parse("a/b/c.m4s").is_none());
        assert!(HlsObject::parse("720p/seg.exe").is_none());
        assert!(HlsObject::parse("720p//x.m4s").is_none());
    }
}
