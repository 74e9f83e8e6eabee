//! GET/HEAD /hls/{*path} and /steering/{*path}: the one proxy operation.
//!
//! Lookup order: memory, then disk (a disk hit is promoted to memory), then
//! the key's flight (joined or started). A stale entry inside its
//! stale-while-revalidate window is served at once while a background
//! flight revalidates it; one inside stale-if-error is served only if the
//! origin fails. Master playlists and steering answers are per viewer:
//! passed through, never cached, never coalesced.
//!
//! `X-Cache`: `HIT` — no origin request was made for this response
//! (including a request that joined another's fetch); `MISS` — this request
//! caused one; `STALE` — served past its freshness; `PASS` — not cacheable,
//! or not buffered this time (the flights' byte budget ran out). A 404
//! `HIT` is a remembered one ([`crate::negative`]).
//!
//! Objects of unlisted and private videos (marked by the origin) are served
//! only to requests whose playback token verifies ([`crate::access`]), from
//! whichever tier; a viewer's media playlist of such a video carries its
//! token on every URI, next to its session id. The content key
//! (`content.key`) is per viewer like a master: passed through, never cached.
//!
//! Paths with dot segments or encoded separators never get here: a layer
//! refuses them first (`shared::delivery::paths`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use shared::error::Problem;
use shared::layout;
use shared::range::{self, RangeRequest};
use shared::sessions::{Heartbeats, SessionId};

use crate::access::{is_signed, mark, viewer_cache_control, Gate, Ticket};
use crate::flight::{Flight, Flights, Head};
use crate::metrics::EdgeMetrics;
use crate::object::{CachedObject, Usable};
use crate::tiers::Tiers;

#[derive(Clone)]
pub struct EdgeState {
    pub tiers: Tiers,
    pub flights: Flights,
    /// `/live/`'s origin (live-ingest), when this edge serves live streams.
    pub live: Option<Flights>,
    pub region: HeaderValue,
    pub metrics: EdgeMetrics,
    pub heartbeats: Heartbeats,
    pub gate: Gate,
}

#[derive(Clone, Copy)]
enum Outcome {
    Hit,
    Miss,
    Stale,
    Pass,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
            Outcome::Pass => "PASS",
        }
    }
}

fn session_of(uri: &Uri) -> Option<SessionId> {
    uri.query()?.split('&').find_map(|kv| kv.strip_prefix("sid=")).and_then(SessionId::parse)
}

/// Per-viewer responses: the master playlist (session, cap, pathways),
/// the content key (token-checked, never stored) and steering.
fn per_viewer(path: &str) -> bool {
    matches!(path.rsplit('/').next(), Some(layout::MASTER_PLAYLIST | shared::playback::KEY_OBJECT)) || path.starts_with("/steering/")
}

/// One viewer request, as the answers are shaped for it.
struct Viewer<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    sid: Option<&'a SessionId>,
    ticket: Ticket<'a>,
}

impl Viewer<'_> {
    /// What a media playlist is tagged with for this viewer: its session id,
    /// and its token if the playlist is signed.
    fn tag(&self, signed: bool) -> String {
        shared::playlist::viewer_query(self.sid.map(SessionId::as_str), self.ticket.viewer_token().filter(|_| signed))
    }
}

pub async fn proxy(State(st): State<EdgeState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let sid = session_of(&uri);
    if let Some(sid) = &sid {
        st.heartbeats.beat(sid);
    }
    // A live master is per viewer, like a video's: the streaming origin
    // rewrites it (session, cap, steering); everything else under /live/ is live-ingest's.
    let live = uri.path().starts_with("/live/") && !per_viewer(uri.path());
    let flights = match (live, &st.live) {
        (false, _) => &st.flights,
        (true, Some(f)) => f,
        (true, None) => {
            let p = Problem::new(StatusCode::NOT_FOUND, "no-live", "Live not served here", "This edge has no live origin (LIVE_ORIGIN_URL).");
            return st.finish(p.into_response(), Outcome::Pass, started);
        }
    };
    let (outcome, res) = if per_viewer(uri.path()) {
        // The origin limits and counts sessions per client: it must learn
        // who this one is even when a player reached this edge directly.
        let headers = forwarded_for(headers, peer);
        let viewer = Viewer { method: &method, headers: &headers, sid: sid.as_ref(), ticket: Ticket::of(&uri, &headers) };
        (Outcome::Pass, st.pass(flights, &uri, &viewer).await)
    } else {
        let viewer = Viewer { method: &method, headers: &headers, sid: sid.as_ref(), ticket: Ticket::of(&uri, &headers) };
        match live_key(&uri) {
            Some(key) => st.lookup(flights, &key, &uri, &viewer).await,
            // A live playlist query the origin will refuse: its answer, not cached.
            None => (Outcome::Pass, st.pass(flights, &uri, &viewer).await),
        }
    };
    st.finish(res, outcome, started)
}

/// The cache key: the path, and for a live media playlist its blocking
/// and delta parameters in canonical form, so viewers waiting for the same
/// (msn, part) share one flight and one upstream request. None: a
/// playlist query that does not parse (passed through for the origin's 400).
fn live_key(uri: &Uri) -> Option<String> {
    let path = uri.path();
    if !(path.starts_with("/live/") && path.ends_with(".m3u8")) {
        return Some(path.to_owned());
    }
    let q = media::llhls::request::PlaylistQuery::parse(uri.query().unwrap_or("")).ok()?.canonical();
    Some(if q.is_empty() { path.to_owned() } else { format!("{path}?{q}") })
}

/// `headers` with the peer appended to X-Forwarded-For, as NGINX's
/// `$proxy_add_x_forwarded_for` does.
fn forwarded_for(mut headers: HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut chain: Vec<String> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
    chain.push(peer.ip().to_string());
    if let Ok(v) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert("x-forwarded-for", v);
    }
    headers
}

impl EdgeState {
    async fn lookup(&self, flights: &Flights, key: &str, uri: &Uri, v: &Viewer<'_>) -> (Outcome, Response) {
        let stale = match self.tiers.get(key).await {
            Some(o) => {
                // Checked before anything else, a background refresh included.
                let signed = match self.gate.admit(&o.headers, &v.ticket) {
                    Ok(signed) => signed,
                    Err(refused) => return (Outcome::Hit, refused),
                };
                match o.usable() {
                    Usable::Fresh => return (Outcome::Hit, from_object(&o, v, signed)),
                    Usable::StaleRevalidate => {
                        // Revalidate in the background; this viewer does not wait.
                        flights.join(key, Some(o.clone()), v.ticket.token());
                        return (Outcome::Stale, from_object(&o, v, signed));
                    }
                    Usable::StaleIfError => Some((o, signed)),
                    Usable::Expired => None,
                }
            }
            None => None,
        };
        if flights.passes(key) {
            return (Outcome::Pass, self.pass(flights, uri, v).await);
        }
        let (flight, started) = flights.join(key, stale.as_ref().map(|(o, _)| o.clone()), v.ticket.token());
        let fetched = if started { Outcome::Miss } else { Outcome::Hit };
        let head = flight.head().await;
        match &*head {
            Head::Refreshed(o) => match self.gate.admit(&o.headers, &v.ticket) {
                Ok(signed) => (fetched, from_object(o, v, signed)),
                Err(refused) => (fetched, refused),
            },
            Head::Response { status, .. } if status.is_server_error() && stale.is_some() => (Outcome::Stale, from_stale(stale, v)),
            Head::Unreachable(_) if stale.is_some() => (Outcome::Stale, from_stale(stale, v)),
            Head::Unreachable(e) => {
                tracing::error!(error = %e, key, "origin unreachable and no copy held");
                let p = Problem::new(StatusCode::BAD_GATEWAY, "origin-unreachable", "Origin unreachable", "The edge could not reach the origin and holds no copy of this object. Retry shortly.");
                (Outcome::Miss, p.into_response())
            }
            Head::TooLarge | Head::Spilled => (Outcome::Pass, self.pass(flights, uri, v).await),
            Head::Response { status, headers: h, len } => match self.gate.admit(h, &v.ticket) {
                // The origin refused the token of the viewer who started this
                // fetch; this viewer's own verified, so it asks for itself.
                Ok(true) if *status == StatusCode::FORBIDDEN && !started => (Outcome::Pass, self.pass(flights, uri, v).await),
                Ok(signed) => (fetched, from_flight(flight, *status, h, *len, v, signed).await),
                Err(refused) => (fetched, refused),
            },
        }
    }

    /// The viewer's request sent on as it is; the answer checked like any other.
    async fn pass(&self, flights: &Flights, uri: &Uri, v: &Viewer<'_>) -> Response {
        let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        match flights.origin().pass_through(pq, v.method, v.headers).await {
            Ok(r) => match self.gate.admit(r.headers(), &v.ticket) {
                Ok(_) => r,
                Err(refused) => refused,
            },
            Err(e) => {
                tracing::error!(error = %e, "origin unreachable on a pass-through");
                Problem::new(StatusCode::BAD_GATEWAY, "origin-unreachable", "Origin unreachable", "The edge could not reach the origin. Retry shortly.").into_response()
            }
        }
    }

    fn finish(&self, mut res: Response, outcome: Outcome, started: Instant) -> Response {
        let label = outcome.label();
        let lower = label.to_ascii_lowercase();
        self.metrics.requests.with_label_values(&[&lower]).inc();
        self.metrics.ttfb.with_label_values(&[&lower]).observe(started.elapsed().as_secs_f64());
        if matches!(outcome, Outcome::Hit) && res.status() == StatusCode::NOT_FOUND {
            self.metrics.negative_hits.inc();
        }
        let h = res.headers_mut();
        if is_signed(h) {
            // No shared cache past this edge may keep it (see `access`).
            let cc = viewer_cache_control(h.get(header::CACHE_CONTROL));
            h.insert(header::CACHE_CONTROL, cc);
        }
        h.insert("x-cache", HeaderValue::from_static(label));
        h.insert("x-edge-region", self.region.clone());
        let served = self.metrics.bytes_served.clone();
        // Fused, whatever the body inside: the compression layer polls again after the end.
        res.map(|body| Body::from_stream(body.into_data_stream().inspect_ok(move |b| served.inc_by(b.len() as u64)).fuse()))
    }
}

/// A viewer's media playlist: every URI carries its session id (so each
/// segment fetch keeps the session alive wherever it is served) and, for a
/// signed one, its token.
fn tagged(playlist: &[u8], query: &str, method: &Method) -> Response {
    let body = shared::playlist::tag_uris(&String::from_utf8_lossy(playlist), query);
    shared::delivery::private_text(layout::PLAYLIST_TYPE, body, *method == Method::HEAD)
}

fn is_playlist(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(layout::PLAYLIST_TYPE.as_bytes()))
}

/// A cached object for a viewer already admitted.
fn from_object(o: &CachedObject, v: &Viewer, signed: bool) -> Response {
    let tag = if is_playlist(&o.headers) { v.tag(signed) } else { String::new() };
    let res = if tag.is_empty() { respond(o, v.method, v.headers) } else { tagged(&o.body, &tag, v.method) };
    if signed {
        mark(res)
    } else {
        res
    }
}

/// The stale copy (admitted when it was looked up) while the origin fails.
fn from_stale(stale: Option<(Arc<CachedObject>, bool)>, v: &Viewer) -> Response {
    let (o, signed) = stale.expect("checked by the caller");
    from_object(&o, v, signed)
}

/// Streams a response out of a flight, for a viewer already admitted: the
/// same 304/206/416 rules as a cached object, applied to the head as soon
/// as it is known.
async fn from_flight(flight: Arc<Flight>, status: StatusCode, h: &HeaderMap, total: Option<u64>, v: &Viewer<'_>, signed: bool) -> Response {
    let tag = if status == StatusCode::OK && is_playlist(h) { v.tag(signed) } else { String::new() };
    let failed = |e: std::io::Error| Problem::new(StatusCode::BAD_GATEWAY, "origin-body-failed", "Origin failed mid-body", e.to_string()).into_response();
    let res = if !tag.is_empty() {
        match flight.collect().await {
            Ok(body) => tagged(&body, &tag, v.method),
            Err(e) => failed(e),
        }
    } else if let Some(res) = streamed_unsized(&flight, status, h, total, v) {
        // Streamed as it arrives, without a length.
        res
    } else if total.is_none() {
        // A range or a HEAD of an answer without a length: once it is all here.
        match flight.clone().collect().await {
            Ok(body) => shape(status, h, body.len() as u64, v.headers).map_or_else(|answered| answered, |(res, from, to)| {
                let b = if *v.method == Method::HEAD || body.is_empty() { Body::empty() } else { Body::from(body.slice(from as usize..=to as usize)) };
                res.body(b).expect("valid response")
            }),
            Err(e) => failed(e),
        }
    } else {
        let total = total.expect("checked above");
        match shape(status, h, total, v.headers) {
            Err(answered) => answered,
            Ok((res, from, to)) => {
                let body = if *v.method == Method::HEAD || total == 0 { Body::empty() } else { Body::from_stream(flight.body(from, to)) };
                res.body(body).expect("valid response")
            }
        }
    };
    if signed {
        mark(res)
    } else {
        res
    }
}

/// A plain GET of an answer still arriving without a length: its chunks as
/// they come, chunked (no Content-Length). None for anything else.
fn streamed_unsized(flight: &Arc<Flight>, status: StatusCode, h: &HeaderMap, total: Option<u64>, v: &Viewer<'_>) -> Option<Response> {
    if total.is_some() || *v.method != Method::GET || v.headers.contains_key(header::RANGE) {
        return None;
    }
    if status == StatusCode::OK {
        if let Some(res) = shared::delivery::not_modified(v.headers, h) {
            return Some(res);
        }
    }
    let mut res = Response::builder().status(status);
    res.headers_mut().expect("valid builder").extend(h.clone());
    Some(res.body(Body::from_stream(flight.clone().body(0, u64::MAX - 1))).expect("valid response"))
}

/// A response from a cached object: 304 for a matching If-None-Match, 206
/// or 416 for a Range, otherwise 200. `Age` says how long ago it was fetched.
pub fn respond(o: &CachedObject, method: &Method, req: &HeaderMap) -> Response {
    let total = o.body.len() as u64;
    let age = HeaderValue::from(o.age().as_secs());
    match shape(StatusCode::OK, &o.headers, total, req) {
        Err(mut answered) => {
            if answered.status() == StatusCode::NOT_MODIFIED {
                answered.headers_mut().insert(header::AGE, age);
            }
            answered
        }
        Ok((mut res, from, to)) => {
            res.headers_mut().expect("valid builder").insert(header::AGE, age);
            let body = if *method == Method::HEAD || total == 0 { Body::empty() } else { Body::from(o.body.slice(from as usize..=to as usize)) };
            res.body(body).expect("valid response")
        }
    }
}

/// The head of an answer from stored headers `h` and a `total`-byte body,
/// for cached objects and flights alike: a 304 or 416 comes back whole (as
/// `Err`); otherwise the builder and the inclusive byte range to send. Only
/// a 200 has validators and ranges; other statuses pass as they are.
fn shape(status: StatusCode, h: &HeaderMap, total: u64, req: &HeaderMap) -> Result<(axum::http::response::Builder, u64, u64), Response> {
    if status == StatusCode::OK {
        if let Some(res) = shared::delivery::not_modified(req, h) {
            return Err(res);
        }
    }
    let (code, from, to, content_range) = match (status, range::parse(req.get(header::RANGE).and_then(|v| v.to_str().ok()), total)) {
        (StatusCode::OK, RangeRequest::Partial(r)) => (StatusCode::PARTIAL_CONTENT, r.start, r.end, Some(r.content_range(total))),
        (StatusCode::OK, RangeRequest::Unsatisfiable) => return Err(shared::delivery::range_not_satisfiable(total)),
        _ => (status, 0, total.saturating_sub(1), None),
    };
    let mut res = Response::builder().status(code);
    let out = res.headers_mut().expect("valid builder");
    out.extend(h.clone());
    if status == StatusCode::OK {
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    out.insert(header::CONTENT_LENGTH, if total == 0 { 0 } else { to - from + 1 }.into());
    if let Some(cr) = content_range {
        out.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).expect("ascii"));
    }
    Ok((res, from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Freshness;
    use std::time::{Duration, SystemTime};

    fn object() -> CachedObject {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/iso.segment"));
        CachedObject { headers, body: bytes::Bytes::from_static(b"0123456789"), stored_at: SystemTime::now() - Duration::from_secs(5), freshness: Freshness { fresh_secs: 60, swr_secs: 0, sie_secs: 0 } }
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
        assert_eq!(r.headers()[header::AGE], "5");
        assert_eq!(axum::body::to_bytes(r.into_body(), 100).await.unwrap(), "234");
        let r = respond(&object(), &Method::GET, &req(header::RANGE, "bytes=10-"));
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    }

    #[test]
    fn a_matching_etag_gets_304() {
        let r = respond(&object(), &Method::GET, &req(header::IF_NONE_MATCH, "W/\"abc\""));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(respond(&object(), &Method::GET, &req(header::IF_NONE_MATCH, "\"zzz\"")).status(), StatusCode::OK);
    }

    #[test]
    fn the_peer_is_appended_to_the_forwarded_chain() {
        let peer: SocketAddr = "203.0.113.5:4000".parse().unwrap();
        assert_eq!(forwarded_for(HeaderMap::new(), peer)["x-forwarded-for"], "203.0.113.5");
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 198.51.100.7"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        assert_eq!(forwarded_for(h, peer)["x-forwarded-for"], "1.1.1.1, 198.51.100.7, 10.0.0.1, 203.0.113.5");
    }

    #[test]
    fn session_ids_are_read_from_the_query() {
        let sid = SessionId::new();
        assert_eq!(session_of(&format!("/hls/x/a.m4s?sid={}", sid.as_str()).parse().unwrap()), Some(sid));
        assert_eq!(session_of(&"/hls/x/a.m4s?sid=bogus".parse().unwrap()), None);
        assert!(per_viewer("/hls/x/master.m3u8") && per_viewer("/steering/x") && !per_viewer("/hls/x/720p/index.m3u8"));
        assert!(per_viewer("/hls/x/content.key"), "the content key is never cached");
    }
}
