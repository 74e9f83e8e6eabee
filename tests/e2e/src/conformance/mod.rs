//! The delivery conformance matrix (issue 19) as data: object kinds, edge
//! cache states and request shapes, and what every combination must answer.
//!
//! Two suites drive it through real servers: the in-process one
//! (`services/cdn-edge/tests/matrix.rs`, which includes this module with
//! `#[path]`, as depending on this crate would build the transcode worker
//! for the edge's tests) and the front-door one
//! (`tests/e2e/tests/conformance_matrix.rs`). So these files use only what
//! both crates have: `shared`, `reqwest`, `bytes`, `flate2`, `serde_json`,
//! `anyhow`.
//!
//! A case is a [`Row`]: kind × state × shape × path. [`check`] derives the
//! expected answer from the row — a combination where a header does not
//! apply (Range on the per-viewer master, say) has an expectation too, never
//! a silent skip — and compares it with what the server sent, byte for
//! byte, after undoing only the Content-Encoding it declared. A new kind,
//! state or shape is one more entry in [`Kind::ALL`], [`State`] or
//! [`SHAPES`] plus its rule in [`check`].
//!
//! The client must not decompress, retry or redirect ([`raw_client`]): a
//! dropped connection on a cold miss (the bug behind issue 19) must reach
//! the test as the failure it is.

mod check;

pub use check::check;

use std::fmt;
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
    let iframes = lines.iter().find_map(|l| l.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:").and_then(uri_attr)).context("the master lists no I-frame playlist")?;
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
    fn every_kind_has_a_media_type_and_every_shape_a_distinct_label() {
        let mut labels: Vec<&str> = SHAPES.iter().map(|s| s.label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), SHAPES.len());
        assert!(Kind::ALL.iter().all(|k| !k.content_type().is_empty()));
    }
}
