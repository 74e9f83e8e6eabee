//! GET/HEAD /hls/{*path}: answer from the cache, or fetch once and answer.
//!
//! `X-Cache: HIT` means no origin request was made for this response —
//! including a request that waited on another's in-flight fetch;
//! `MISS` means this request caused the fetch (or was passed through).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use shared::error::Problem;
use shared::range::{self, RangeRequest};

use crate::cache::{CachedObject, ObjectCache};
use crate::fetch::{Miss, Origin};

#[derive(Clone)]
pub struct EdgeState {
    pub cache: ObjectCache,
    pub origin: Origin,
    pub region: HeaderValue,
    pub requests: prometheus::IntCounterVec,
}

pub async fn proxy(State(st): State<EdgeState>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    // The cache key is the path alone: HLS objects do not vary by query.
    let key = uri.path().to_owned();
    let (object, label) = match st.cache.get(&key).await {
        Some(o) => (o, "HIT"),
        None => match st.cache.entry(key.clone()).or_try_insert_with(st.origin.fetch(&key)).await {
            Ok(entry) => {
                let label = if entry.is_fresh() { "MISS" } else { "HIT" };
                (entry.into_value(), label)
            }
            Err(miss) => return st.not_stored(&miss, &key, &method, &headers).await,
        },
    };
    st.requests.with_label_values(&[&label.to_ascii_lowercase()]).inc();
    let mut res = respond(&object, &method, &headers);
    let h = res.headers_mut();
    h.insert("x-cache", HeaderValue::from_static(label));
    h.insert("x-edge-region", st.region.clone());
    h.insert(header::AGE, object.age().as_secs().into());
    res
}

impl EdgeState {
    async fn not_stored(&self, miss: &Arc<Miss>, key: &str, method: &Method, headers: &HeaderMap) -> Response {
        self.requests.with_label_values(&["pass"]).inc();
        let mut res = match &**miss {
            Miss::Uncacheable { status, headers, body } => {
                let mut r = Response::builder().status(*status);
                r.headers_mut().expect("valid builder").extend(headers.clone());
                let body = if *method == Method::HEAD { Body::empty() } else { Body::from(body.clone()) };
                r.body(body).expect("valid response")
            }
            Miss::TooLarge => match self.origin.pass_through(key, headers).await {
                Ok(r) => r,
                Err(e) => unreachable_origin(&e),
            },
            Miss::Unreachable(_) => unreachable_origin(miss),
        };
        res.headers_mut().insert("x-cache", HeaderValue::from_static("MISS"));
        res.headers_mut().insert("x-edge-region", self.region.clone());
        res
    }
}

fn unreachable_origin(e: &Miss) -> Response {
    tracing::error!(error = %e, "origin fetch failed");
    Problem::new(StatusCode::BAD_GATEWAY, "origin-unreachable", "Origin unreachable", "The edge could not reach the origin and holds no copy of this object. Retry shortly.")
        .into_response()
}

/// A response from a cached object: 304 for a matching If-None-Match, 206
/// or 416 for a Range, otherwise 200.
pub fn respond(o: &CachedObject, method: &Method, req: &HeaderMap) -> Response {
    let etag = o.headers.get(header::ETAG);
    let inm = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if let (Some(etag), Some(inm)) = (etag.and_then(|e| e.to_str().ok()), inm) {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            for name in [header::ETAG, header::CACHE_CONTROL, header::LAST_MODIFIED] {
                if let Some(v) = o.headers.get(&name) {
                    r.headers_mut().insert(name, v.clone());
                }
            }
            return r;
        }
    }
    let total = o.body.len() as u64;
    let (status, body, content_range) = match range::parse(req.get(header::RANGE).and_then(|v| v.to_str().ok()), total) {
        RangeRequest::Full => (StatusCode::OK, o.body.clone(), None),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, o.body.slice(r.start as usize..=r.end as usize), Some(r.content_range(total))),
        RangeRequest::Unsatisfiable => {
            let mut r = Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, "range-not-satisfiable", "Range not satisfiable", format!("the object is {total} bytes long"))
                .into_response();
            r.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"));
            return r;
        }
    };
    let mut res = Response::builder().status(status);
    let h = res.headers_mut().expect("valid builder");
    h.extend(o.headers.clone());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, body.len().into());
    if let Some(cr) = content_range {
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).expect("ascii"));
    }
    let body = if *method == Method::HEAD { Body::empty() } else { Body::from(body) };
    res.body(body).expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn object() -> CachedObject {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/iso.segment"));
        CachedObject { headers, body: bytes::Bytes::from_static(b"0123456789"), stored_at: Instant::now(), ttl: Duration::from_secs(60) }
    }

    fn req(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[tokio::test]
    async fn ranges_are_cut_from_the_cached_object() {
        let r = respond(&object(), &Method::GET, &req(header::RANGE, "bytes=2-4"));
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(axum::body::to_bytes(r.into_body(), 100).await.unwrap(), "234");
        let r = respond(&object(), &Method::GET, &req(header::RANGE, "bytes=10-"));
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    }

    #[test]
    fn a_matching_etag_gets_304() {
        let r = respond(&object(), &Method::GET, &req(header::IF_NONE_MATCH, "\"abc\""));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(respond(&object(), &Method::GET, &req(header::IF_NONE_MATCH, "\"zzz\"")).status(), StatusCode::OK);
    }
}
