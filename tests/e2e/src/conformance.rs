//! The delivery conformance matrix (issue 19) as data: object kinds, edge
//! cache states and request shapes, and what every combination must answer.
//!
//! Two suites drive it through real servers: the in-process one
//! (`services/cdn-edge/tests/matrix.rs`, which includes this file with
//! `#[path]`: the edge's tests cannot depend on this crate) and the
//! front-door one (`tests/e2e/tests/conformance_matrix.rs`). So this file
//! uses only what both crates have: `shared`, `reqwest`, `bytes`, `flate2`,
//! `anyhow`.
//!
//! A case is a [`Row`]: kind × state × shape × path. [`check`] derives the
//! expected answer from the row — a combination where a header does not
//! apply (Range on the per-viewer master, say) has an expectation too, never
//! a silent skip — and compares it with what the server sent, byte for
//! byte, after undoing only the Content-Encoding it declared. A new kind,
//! state or shape is one more entry in [`Kind::ALL`], [`State`] or
//! [`SHAPES`] plus its rule below.
//!
//! The client must not decompress, retry or redirect ([`raw_client`]): a
//! dropped connection on a cold miss (the bug behind issue 19) must reach
//! the test as the failure it is.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, Version};
use shared::sessions::SessionId;
use shared::storage::Storage;

/// What a player fetches, by the role the object plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Master,
    MediaPlaylist,
    Mpd,
    Init,
    Segment,
    IFrames,
    Vtt,
    Sprite,
    Poster,
}

impl Kind {
    pub const ALL: [Kind; 9] = [Kind::Master, Kind::MediaPlaylist, Kind::Mpd, Kind::Init, Kind::Segment, Kind::IFrames, Kind::Vtt, Kind::Sprite, Kind::Poster];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::MediaPlaylist => "media playlist",
            Kind::Mpd => "MPD",
            Kind::Init => "init segment",
            Kind::Segment => "media segment",
            Kind::IFrames => "I-frame playlist",
            Kind::Vtt => "VTT",
            Kind::Sprite => "sprite",
            Kind::Poster => "poster",
        }
    }

    /// Rewritten for each viewer (session, cap, steering): never shared.
    pub fn per_viewer(self) -> bool {
        self == Kind::Master
    }

    /// HLS playlists whose URIs get the viewer's `sid` when it asks with one.
    fn taggable(self) -> bool {
        matches!(self, Kind::MediaPlaylist | Kind::IFrames)
    }

    /// Text manifests: gzipped when asked, under the playlist cache policy.
    fn text(self) -> bool {
        matches!(self, Kind::Master | Kind::MediaPlaylist | Kind::Mpd | Kind::IFrames | Kind::Vtt)
    }

    /// Written out here rather than taken from `shared::layout`, so that a
    /// wrong entry there shows as a failure instead of agreeing with itself.
    fn content_type(self) -> &'static str {
        match self {
            Kind::Master | Kind::MediaPlaylist | Kind::IFrames => "application/vnd.apple.mpegurl",
            Kind::Mpd => "application/dash+xml",
            Kind::Init => "video/mp4",
            Kind::Segment => "video/iso.segment",
            Kind::Vtt => "text/vtt",
            Kind::Sprite | Kind::Poster => "image/jpeg",
        }
    }
}

/// Where the answer comes from, as the edge holds the object when the request arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Straight from the origin or a front door in front of it: no edge state is set up.
    Direct,
    Cold,
    /// Another request's origin fetch is still under way.
    Coalesced,
    Hit,
    /// Past its freshness, inside stale-while-revalidate.
    StaleRevalidate,
    /// Past its freshness and stale-while-revalidate, inside stale-if-error, with the origin down.
    StaleIfError,
    /// Cached, then purged.
    Purged,
    /// Too large to buffer: each request passes through to the origin.
    Pass,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Direct => "direct",
            State::Cold => "cold miss",
            State::Coalesced => "coalesced miss",
            State::Hit => "hit",
            State::StaleRevalidate => "stale (SWR)",
            State::StaleIfError => "stale, origin down (SIE)",
            State::Purged => "purged",
            State::Pass => "too large (pass)",
        }
    }

    /// X-Cache of a shared object in this state (`serve.rs` defines the words).
    fn x_cache(self) -> Option<&'static str> {
        match self {
            State::Direct => None,
            State::Cold | State::Purged => Some("MISS"),
            // The joiner made no origin request of its own.
            State::Coalesced | State::Hit => Some("HIT"),
            State::StaleRevalidate | State::StaleIfError => Some("STALE"),
            State::Pass => Some("PASS"),
        }
    }

    /// Answered from a stored copy, so `Age` says how old it is.
    fn stored(self) -> bool {
        matches!(self, State::Hit | State::StaleRevalidate | State::StaleIfError)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `bytes=0-99`, cut at the end of a shorter object.
    First100,
    /// `bytes=-100`.
    Last100,
    /// `bytes=10-`.
    From10,
    /// `bytes=<length>-`: nothing there.
    PastEnd,
}

impl Range {
    fn header(self, len: u64) -> String {
        match self {
            Range::First100 => "bytes=0-99".into(),
            Range::Last100 => "bytes=-100".into(),
            Range::From10 => "bytes=10-".into(),
            Range::PastEnd => format!("bytes={len}-"),
        }
    }

    /// The inclusive bytes a satisfiable range selects (RFC 9110 §14.1.2), None for 416.
    fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            Range::First100 if len > 0 => Some((0, 99.min(len - 1))),
            Range::Last100 if len > 0 => Some((len.saturating_sub(100), len - 1)),
            Range::From10 if len > 10 => Some((10, len - 1)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    /// If-None-Match with the object's ETag.
    SameEtag,
    /// If-None-Match with another ETag.
    OtherEtag,
    /// If-Modified-Since the object's Last-Modified.
    SinceModified,
}

/// One way a player (or a cache in front) asks.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub label: &'static str,
    pub head: bool,
    pub accept_encoding: Option<&'static str>,
    pub range: Option<Range>,
    pub validator: Option<Validator>,
    /// With `?sid=`: the viewer's session, which playlists are rewritten for.
    pub sid: bool,
}

const GET: Shape = Shape { label: "GET", head: false, accept_encoding: None, range: None, validator: None, sid: false };

pub static SHAPES: [Shape; 17] = [
    GET,
    Shape { label: "HEAD", head: true, ..GET },
    Shape { label: "GET gzip", accept_encoding: Some("gzip"), ..GET },
    Shape { label: "HEAD gzip", head: true, accept_encoding: Some("gzip"), ..GET },
    Shape { label: "GET br", accept_encoding: Some("br"), ..GET },
    Shape { label: "GET browser encodings", accept_encoding: Some("gzip, deflate, br, zstd"), ..GET },
    Shape { label: "GET Range 0-99", range: Some(Range::First100), ..GET },
    Shape { label: "GET Range -100", range: Some(Range::Last100), ..GET },
    Shape { label: "GET Range 10-", range: Some(Range::From10), ..GET },
    Shape { label: "GET Range past end", range: Some(Range::PastEnd), ..GET },
    Shape { label: "GET Range 0-99 gzip", range: Some(Range::First100), accept_encoding: Some("gzip"), ..GET },
    Shape { label: "GET If-None-Match same", validator: Some(Validator::SameEtag), ..GET },
    Shape { label: "GET If-None-Match other", validator: Some(Validator::OtherEtag), ..GET },
    Shape { label: "GET If-Modified-Since", validator: Some(Validator::SinceModified), ..GET },
    Shape { label: "GET ?sid", sid: true, ..GET },
    Shape { label: "GET ?sid gzip", sid: true, accept_encoding: Some("gzip"), ..GET },
    Shape { label: "HEAD ?sid", head: true, sid: true, ..GET },
];

impl Shape {
    fn gzip(&self) -> bool {
        self.accept_encoding.is_some_and(|a| a.split(',').any(|c| c.trim() == "gzip"))
    }
}

/// An object as stored in S3: the bytes and validators every answer is checked against.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: Kind,
    /// Path inside the video's folder, as players name it: `720p/index.m3u8`.
    pub name: String,
    pub body: Bytes,
    pub etag: String,
    pub last_modified: String,
}

/// Names one object of each kind from the stored master and the playlists
/// it leads to (as a player finds them), and reads each from S3 under
/// `prefix` (the video's committed folder).
pub async fn objects(storage: &Storage, prefix: &str) -> anyhow::Result<Vec<Object>> {
    let read = |name: String| async move {
        let key = format!("{prefix}{name}");
        let out = storage.get(&key).await?.with_context(|| format!("no object {key}"))?;
        let etag = out.e_tag().with_context(|| format!("{key} has no ETag"))?.to_owned();
        let last_modified = out.last_modified().with_context(|| format!("{key} has no Last-Modified"))?.fmt(shared::storage::DateFormat::HttpDate)?;
        let body = out.body.collect().await?.into_bytes();
        Ok::<_, anyhow::Error>((name, body, etag, last_modified))
    };
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let master = read("master.m3u8".into()).await?;
    let master_text = text(&master.1);
    let lines: Vec<&str> = master_text.lines().map(str::trim).collect();
    let variant = lines
        .windows(2)
        .find(|w| w[0].starts_with("#EXT-X-STREAM-INF:") && w[0].contains("RESOLUTION="))
        .map(|w| w[1].to_owned())
        .context("the master lists no video variant")?;
    let iframes = lines.iter().find_map(|l| l.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:").and_then(|a| uri_attr(a))).context("the master lists no I-frame playlist")?;
    let media = read(variant.clone()).await?;
    let media_text = text(&media.1);
    let dir = variant.rsplit_once('/').map_or(String::new(), |(d, _)| format!("{d}/"));
    let init = media_text.lines().find_map(|l| l.trim().strip_prefix("#EXT-X-MAP:").and_then(uri_attr)).context("the media playlist has no EXT-X-MAP")?;
    let segment = media_text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).context("the media playlist has no segment")?;
    let vtt = read("thumbnails.vtt".into()).await?;
    let sprite = text(&vtt.1).lines().find_map(|l| l.split_once(".jpg").map(|(n, _)| format!("{}.jpg", n.trim()))).context("the VTT names no sprite")?;
    let mut out = Vec::new();
    for (kind, got) in [
        (Kind::Master, master),
        (Kind::MediaPlaylist, media),
        (Kind::Mpd, read("manifest.mpd".into()).await?),
        (Kind::Init, read(format!("{dir}{init}")).await?),
        (Kind::Segment, read(format!("{dir}{segment}")).await?),
        (Kind::IFrames, read(iframes).await?),
        (Kind::Vtt, vtt),
        (Kind::Sprite, read(sprite).await?),
        (Kind::Poster, read("poster.jpg".into()).await?),
    ] {
        let (name, body, etag, last_modified) = got;
        out.push(Object { kind, name, body, etag, last_modified });
    }
    Ok(out)
}

fn uri_attr(attrs: &str) -> Option<String> {
    let start = attrs.find("URI=\"")? + 5;
    let len = attrs[start..].find('"')?;
    Some(attrs[start..start + len].to_owned())
}

/// A client that shows exactly what the server sent: no decompression, no
/// retries, no redirects, a new connection per request (a pooled one could
/// hide a connection the server dropped). Add TLS roots or the HTTP
/// version before `build`.
pub fn raw_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .retry(reqwest::retry::never())
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
}

/// The request a row makes for `object` of the video at `base` (`http://host/hls/{id}/`).
pub fn request(client: &reqwest::Client, base: &str, object: &Object, shape: &Shape, sid: &SessionId) -> reqwest::RequestBuilder {
    let query = if shape.sid { format!("?sid={}", sid.as_str()) } else { String::new() };
    let method = if shape.head { Method::HEAD } else { Method::GET };
    let mut r = client.request(method, format!("{base}{}{query}", object.name));
    if let Some(ae) = shape.accept_encoding {
        r = r.header(header::ACCEPT_ENCODING, ae);
    }
    if let Some(range) = shape.range {
        r = r.header(header::RANGE, range.header(object.body.len() as u64));
    }
    match shape.validator {
        Some(Validator::SameEtag) => r = r.header(header::IF_NONE_MATCH, &object.etag),
        Some(Validator::OtherEtag) => r = r.header(header::IF_NONE_MATCH, "\"not-this-one\""),
        Some(Validator::SinceModified) => r = r.header(header::IF_MODIFIED_SINCE, &object.last_modified),
        None => {}
    }
    r
}

/// An answer as it came off the wire.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends and reads the whole answer; a dropped connection is an `Err` with its cause.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Seen, String> {
    let chain = |e: reqwest::Error| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    let res = req.send().await.map_err(chain)?;
    let (status, version, headers) = (res.status().as_u16(), res.version(), res.headers().clone());
    let body = res.bytes().await.map_err(|e| format!("{status} head, then the body failed: {}", chain(e)))?;
    Ok(Seen { status, version, headers, body })
}

/// One case of the matrix.
pub struct Row<'a> {
    pub kind: Kind,
    pub state: State,
    pub shape: &'a Shape,
    /// Which server was asked: "origin", "edge", "nginx h2+TLS", …
    pub path: &'a str,
}

impl fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} × {} × {} × {}", self.kind.label(), self.state.label(), self.shape.label, self.path)
    }
}

/// The Cache-Control the origin was configured with, per class of object.
#[derive(Debug, Clone)]
pub struct Policy {
    pub text: String,
    pub media: String,
}

/// Everything wrong with `seen` as the answer to `row`, each line naming the row.
/// `sid` is the session the request carried (if its shape adds one).
pub fn check(row: &Row, object: &Object, policy: &Policy, sid: &SessionId, seen: &Result<Seen, String>) -> Vec<String> {
    let seen = match seen {
        Ok(s) => s,
        Err(e) => return vec![format!("{row}: no answer: {e}")],
    };
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(format!("{row}: {what}"));
        }
    };
    let (kind, shape) = (row.kind, row.shape);
    let len = object.body.len() as u64;
    let get = |name: header::HeaderName| seen.headers.get(&name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let tagged = kind.taggable() && shape.sid;
    // Per-viewer answers are private rewrites: the stored object's validators, ranges and policy do not apply.
    let private = kind.per_viewer() || tagged;
    let range = shape.range.map(|r| r.resolve(len));

    let status = if kind.per_viewer() && row.state == State::StaleIfError {
        502 // nothing of a per-viewer answer is stored to fall back on
    } else if private {
        200
    } else if matches!(shape.validator, Some(Validator::SameEtag | Validator::SinceModified)) {
        304
    } else {
        match range {
            Some(None) => 416,
            Some(Some(_)) => 206,
            None => 200,
        }
    };
    expect(seen.status == status, format!("status {} (expected {status})", seen.status));
    if seen.status != status {
        return bad;
    }
    let problem = status >= 400;
    let representation = matches!(status, 200 | 206 | 304) && !private;

    // Content-Type, and Content-Encoding: gzip only for text, whole (200) answers.
    let ct = get(header::CONTENT_TYPE);
    if problem {
        expect(ct.as_deref() == Some("application/problem+json"), format!("Content-Type {ct:?} (expected application/problem+json)"));
    } else if status != 304 {
        expect(ct.as_deref().is_some_and(|c| c.starts_with(kind.content_type())), format!("Content-Type {ct:?} (expected {})", kind.content_type()));
    }
    let gzip = status == 200 && kind.text() && shape.gzip();
    let ce = get(header::CONTENT_ENCODING);
    expect(ce.as_deref() == gzip.then_some("gzip"), format!("Content-Encoding {ce:?} (expected {:?})", gzip.then_some("gzip")));

    // Content-Range.
    let cr = get(header::CONTENT_RANGE);
    let want_cr = match (status, range) {
        (206, Some(Some((a, b)))) => Some(format!("bytes {a}-{b}/{len}")),
        (416, _) => Some(format!("bytes */{len}")),
        _ => None,
    };
    expect(cr == want_cr, format!("Content-Range {cr:?} (expected {want_cr:?})"));

    // Validators: the stored object's on a shared answer (a gzipped one may
    // weaken the ETag, as it is another encoding of the same bytes); none on a private rewrite.
    let etag = get(header::ETAG);
    if representation {
        let ok = etag.as_deref() == Some(object.etag.as_str()) || (ce.is_some() && etag.as_deref() == Some(format!("W/{}", object.etag).as_str()));
        expect(ok, format!("ETag {etag:?} (expected {:?})", object.etag));
        let lm = get(header::LAST_MODIFIED);
        expect(lm.as_deref() == Some(object.last_modified.as_str()), format!("Last-Modified {lm:?} (expected {:?})", object.last_modified));
    } else if private {
        expect(etag.is_none(), format!("ETag {etag:?} on a per-viewer rewrite"));
    }

    // Cache-Control: the origin's policy, or private on a rewrite.
    let cc = get(header::CACHE_CONTROL);
    if representation {
        let want = if kind.text() { &policy.text } else { &policy.media };
        expect(cc.as_deref() == Some(want.as_str()), format!("Cache-Control {cc:?} (expected {want:?})"));
    } else if private && status == 200 {
        expect(cc.as_deref() == Some("private, no-store"), format!("Cache-Control {cc:?} (expected \"private, no-store\")"));
    }

    // Vary: a shared text answer may be gzipped for the next asker, so
    // every copy must say it varies, or a cache in front could hand gzip to
    // a client that cannot read it. A private, no-store answer is never kept.
    let vary: Vec<String> = seen.headers.get_all(header::VARY).iter().flat_map(|v| String::from_utf8_lossy(v.as_bytes()).split(',').map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>()).collect();
    if (representation && status == 200 && kind.text()) || (gzip && !private) {
        expect(vary.iter().any(|v| v == "accept-encoding" || v == "*"), format!("Vary {vary:?} lacks Accept-Encoding"));
    }

    // Age: present on what a cache answers from its copy; at least the freshness lifetime once stale.
    let age = get(header::AGE);
    let parsed = age.as_deref().map(|a| a.parse::<u64>());
    expect(!matches!(parsed, Some(Err(_))), format!("Age {age:?} is not a number"));
    if row.state == State::Direct {
        expect(age.is_none(), format!("Age {age:?} straight from the origin"));
    } else if row.state.stored() && representation {
        let min = if matches!(row.state, State::StaleRevalidate | State::StaleIfError) { 1 } else { 0 };
        expect(matches!(parsed, Some(Ok(a)) if a >= min), format!("Age {age:?} (expected ≥ {min})"));
    }

    // X-Cache: what the edge did; a per-viewer answer always passes.
    let x_cache = get(header::HeaderName::from_static("x-cache"));
    let want_x = if kind.per_viewer() && row.state != State::Direct { Some("PASS") } else { row.state.x_cache() };
    if row.state != State::Direct {
        expect(x_cache.as_deref() == want_x, format!("X-Cache {x_cache:?} (expected {want_x:?})"));
    }

    // Framing: an identity answer says its length; HTTP/1.1 without a length is chunked.
    let cl = get(header::CONTENT_LENGTH).map(|v| v.parse::<u64>());
    let te = get(header::TRANSFER_ENCODING);
    let wire = seen.body.len() as u64;
    if shape.head || status == 304 {
        expect(seen.body.is_empty(), format!("{wire} body bytes on a HEAD or 304"));
    }
    if !shape.head && status != 304 {
        match &cl {
            Some(Ok(n)) => expect(*n == wire, format!("Content-Length {n} but {wire} bytes came")),
            Some(Err(_)) => expect(false, format!("Content-Length {:?} is not a number", get(header::CONTENT_LENGTH))),
            None => {
                expect(ce.is_some() || problem, "no Content-Length on an identity answer".into());
                if seen.version == Version::HTTP_11 {
                    expect(te.as_deref().is_some_and(|t| t.contains("chunked")), format!("HTTP/1.1 with neither Content-Length nor chunked (Transfer-Encoding {te:?})"));
                }
            }
        }
    }
    if shape.head && ce.is_none() && status == 200 {
        let want = if tagged { Some(tagged_len(&String::from_utf8_lossy(&object.body), sid)) } else if kind.per_viewer() { None } else { Some(len) };
        match want {
            // A rewrite's length is the stored one plus the session on every URI; checked by the GET rows.
            None => expect(matches!(cl, Some(Ok(n)) if n > 0), format!("HEAD Content-Length {:?}", get(header::CONTENT_LENGTH))),
            Some(w) => expect(matches!(cl, Some(Ok(n)) if n == w), format!("HEAD Content-Length {:?} (expected {w})", get(header::CONTENT_LENGTH))),
        }
    }
    if shape.head || status == 304 {
        return bad;
    }

    // Body: decoded as declared, then byte for byte.
    let body = match ce.as_deref() {
        Some("gzip") => {
            let mut out = Vec::new();
            match flate2::read::GzDecoder::new(&seen.body[..]).read_to_end(&mut out) {
                Ok(_) => Bytes::from(out),
                Err(e) => {
                    expect(false, format!("gzip body does not decode: {e}"));
                    return bad;
                }
            }
        }
        Some(other) => {
            expect(false, format!("undecodable Content-Encoding {other}"));
            return bad;
        }
        None => seen.body.clone(),
    };
    let text = || String::from_utf8_lossy(&body).into_owned();
    match status {
        416 | 502 => {
            let p: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            expect(p.as_ref().and_then(|p| p["status"].as_u64()) == Some(u64::from(status)), format!("problem body {:?}", text()));
        }
        _ if kind.per_viewer() => {
            let session = get(header::HeaderName::from_static("x-session-id"));
            match session.as_deref().and_then(SessionId::parse) {
                None => expect(false, format!("X-Session-Id {session:?} on a master")),
                Some(s) => {
                    for e in tagged_errors(&text(), &s) {
                        expect(false, e);
                    }
                    let got = variant_uris(&strip_query(&text(), &s));
                    let stored = variant_uris(&String::from_utf8_lossy(&object.body));
                    expect(got == stored, format!("master URIs {got:?}, stored {stored:?}"));
                }
            }
        }
        _ if tagged => {
            for e in tagged_errors(&text(), sid) {
                expect(false, e);
            }
            let stored = String::from_utf8_lossy(&object.body).lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
            let got = strip_query(&text(), sid);
            let got = got.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
            expect(got == stored, "the session's playlist, its sid taken out, is not the stored one".into());
        }
        206 => {
            let (a, b) = range.flatten().expect("a 206 row has a satisfiable range");
            expect(body == object.body.slice(a as usize..=b as usize), format!("206 body ({} bytes) is not bytes {a}-{b} of the object", body.len()));
        }
        _ => expect(body == object.body, format!("body ({} bytes) is not the stored object ({len} bytes)", body.len())),
    }
    bad
}

/// Every URI of a playlist: URI lines and `URI="…"` attributes.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            out.extend(uri_attr(line));
        } else {
            out.push(line.to_owned());
        }
    }
    out
}

/// A master's URIs as a set, relative to the video's folder: steering
/// repeats each variant per pathway with absolute URLs
/// (`http://edge/hls/{id}/720p/index.m3u8`), and adds the steering server's.
fn variant_uris(master: &str) -> std::collections::BTreeSet<String> {
    uris(master)
        .into_iter()
        .filter(|u| !u.contains("/steering/"))
        .map(|u| match u.find("/hls/").and_then(|i| u[i + 5..].split_once('/')) {
            Some((_, relative)) if u.contains("://") => relative.to_owned(),
            _ => u,
        })
        .collect()
}

/// What is wrong with a session's playlist: a URI without its `sid`.
fn tagged_errors(playlist: &str, sid: &SessionId) -> Vec<String> {
    let want = format!("sid={}", sid.as_str());
    let all = uris(playlist);
    let mut bad: Vec<String> = all.iter().filter(|u| !u.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv == want))).map(|u| format!("URI {u:?} lacks {want}")).collect();
    if all.is_empty() {
        bad.push("a playlist without URIs".into());
    }
    bad
}

/// The length of a session's copy of `stored`: one line per stored line,
/// each URI one `?sid=…` (or `&sid=…`) longer.
fn tagged_len(stored: &str, sid: &SessionId) -> u64 {
    let extra = format!("?sid={}", sid.as_str()).len();
    let line = |t: &str| if t.is_empty() { 1 } else { t.len() + 1 + extra * if t.starts_with('#') { t.matches("URI=\"").count() } else { 1 } };
    stored.lines().map(|l| line(l.trim()) as u64).sum()
}

/// The playlist with the session's query taken off every URI.
fn strip_query(playlist: &str, sid: &SessionId) -> String {
    let q = format!("sid={}", sid.as_str());
    playlist.replace(&format!("?{q}&"), "?").replace(&format!("?{q}"), "").replace(&format!("&{q}"), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_as_rfc_9110_says() {
        assert_eq!(Range::First100.resolve(60), Some((0, 59)));
        assert_eq!(Range::First100.resolve(1000), Some((0, 99)));
        assert_eq!(Range::Last100.resolve(60), Some((0, 59)));
        assert_eq!(Range::Last100.resolve(1000), Some((900, 999)));
        assert_eq!(Range::From10.resolve(11), Some((10, 10)));
        assert_eq!(Range::From10.resolve(10), None);
        assert_eq!(Range::PastEnd.resolve(1000), None);
    }

    #[test]
    fn a_session_playlist_is_checked_uri_by_uri() {
        let sid = SessionId::new();
        let q = format!("sid={}", sid.as_str());
        let good = format!("#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4?{q}\"\n#EXTINF:6,\nseg_00000.m4s?{q}\n");
        assert!(tagged_errors(&good, &sid).is_empty());
        assert_eq!(strip_query(&good, &sid), "#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6,\nseg_00000.m4s\n");
        let missed = format!("#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6,\nseg_00000.m4s?{q}\n");
        assert_eq!(tagged_errors(&missed, &sid).len(), 1);
        let other = "#EXTM3U\n#EXTINF:6,\nseg_00000.m4s?sid=0123\n";
        assert_eq!(tagged_errors(other, &sid).len(), 1);
    }

    #[test]
    fn every_kind_has_a_media_type_and_every_shape_a_distinct_label() {
        let mut labels: Vec<&str> = SHAPES.iter().map(|s| s.label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), SHAPES.len());
        assert!(Kind::ALL.iter().all(|k| !k.content_type().is_empty()));
    }
}
