//! Requests to the origin (or to a parent edge: the same interface). One
//! pooled, keep-alive client; cacheable fetches go out without the
//! viewer's query or headers, so the origin answers the shared object;
//! per-viewer requests (master playlists, content keys, steering) are passed
//! through whole. A shared fetch carries the playback token of the viewer
//! that started it in `x-playback-token` (see `shared::playback`), so the
//! origin, or a parent edge, checks it without tagging the object for that
//! viewer.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use shared::playback::{ACCESS_HEADER, FORWARDED_TOKEN_HEADER};

/// Headers of an origin response worth keeping and replaying; the signed
/// mark among them, so every copy of a protected object stays protected.
const KEPT: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::CONTENT_ENCODING,
    header::EXPIRES,
    HeaderName::from_static(ACCESS_HEADER),
];
/// Per-viewer headers passed both ways on a pass-through (a token an edge
/// in front forwarded included: the viewer's own is in the query).
const VIEWER_REQUEST: [&str; 7] = ["range", "if-none-match", "if-modified-since", "x-viewer-region", "x-forwarded-for", "accept-encoding", FORWARDED_TOKEN_HEADER];
/// (`retry-after`: the origin's 429 for too many sessions must keep it;
/// `vary`: a pass-through keeps the origin's `Content-Encoding`, so a cache in
/// front must learn that the body depends on `Accept-Encoding`.)
const VIEWER_RESPONSE: [&str; 7] = ["content-length", "content-range", "accept-ranges", "x-session-id", "x-bitrate-cap", "retry-after", "vary"];

#[derive(Clone)]
pub struct Origin {
    client: reqwest::Client,
    base: String,
    pub fetches: prometheus::IntCounter,
}

pub fn keep(from: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in KEPT {
        if let Some(v) = from.get(name.as_str()) {
            h.insert(name, v.clone());
        }
    }
    h
}

impl Origin {
    pub fn new(base: &str, fetches: prometheus::IntCounter) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned(), fetches })
    }

    /// One origin request for a shared object.
    pub async fn get(&self, path: &str, extra: HeaderMap) -> Result<reqwest::Response, String> {
        self.fetches.inc();
        let mut headers = extra;
        shared::telemetry::inject_current(&mut shared::telemetry::HeaderInjector(&mut headers));
        self.client.get(format!("{}{path}", self.base)).headers(headers).send().await.map_err(|e| format!("{e}"))
    }

    /// The viewer's request as it is (path and query, viewer headers), the
    /// answer streamed back as it is.
    pub async fn pass_through(&self, path_and_query: &str, method: &axum::http::Method, request: &HeaderMap) -> Result<Response, String> {
        self.fetches.inc();
        let mut headers = HeaderMap::new();
        for name in VIEWER_REQUEST {
            if let Some(v) = request.get(name) {
                headers.insert(HeaderName::from_static(name), v.clone());
            }
        }
        shared::telemetry::inject_current(&mut shared::telemetry::HeaderInjector(&mut headers));
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).map_err(|e| e.to_string())?;
        let res = self.client.request(method, format!("{}{path_and_query}", self.base)).headers(headers).send().await.map_err(|e| format!("{e}"))?;
        let mut out = Response::builder().status(StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
        let h = out.headers_mut().expect("valid builder");
        h.extend(keep(res.headers()));
        for name in VIEWER_RESPONSE {
            if let Some(v) = res.headers().get(name) {
                h.insert(HeaderName::from_static(name), v.clone());
            }
        }
        Ok(out.body(Body::from_stream(res.bytes_stream())).expect("valid response"))
    }
}
