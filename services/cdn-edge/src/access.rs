//! Signed playback at the edge: which answers need a token, and whether a
//! request's token lets it have one.
//!
//! The origin marks every answer about an unlisted or private video with
//! `x-playback-access: signed`; the mark is kept with the cached copy, so a
//! memory hit, a disk hit, a joined flight, a remembered 404 and a
//! pass-through are all checked alike, before a byte of the answer leaves.
//! The token is verified here, with public keys only
//! (`PLAYBACK_PUBLIC_KEYS`) and no database or Redis call: a verified token
//! is remembered ([`Verifier`]), so a hit costs one lookup. The cache key
//! stays the path: one copy serves every authorised viewer.
//!
//! A viewer brings its token in the query; an edge in front of this one
//! (tiered caching) forwards the token of the viewer whose request started
//! its shared fetch in `x-playback-token`, and so does this edge towards
//! its origin ([`crate::flight`]).
//!
//! A signed answer leaves with `Cache-Control: private` (the origin's
//! lifetimes kept), so no shared cache downstream keeps it; an edge still
//! stores a signed object marked private ([`crate::object::Freshness`]),
//! because it checks the token on every answer itself.

use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use shared::playback::{forwarded_token, token_in, Verifier, ACCESS_HEADER, ACCESS_SIGNED};
use uuid::Uuid;

/// Whether stored or origin headers mark an answer as needing a token.
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.get(ACCESS_HEADER).is_some_and(|v| v.as_bytes() == ACCESS_SIGNED.as_bytes())
}

/// What a request brings to the gate.
#[derive(Debug, Clone, Copy)]
pub struct Ticket<'a> {
    path: &'a str,
    /// The viewer's own token (query).
    viewer: Option<&'a str>,
    /// A token forwarded by an edge in front (header).
    forwarded: Option<&'a str>,
}

impl<'a> Ticket<'a> {
    pub fn of(uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self { path: uri.path(), viewer: token_in(uri.query()), forwarded: forwarded_token(headers) }
    }

    /// The token to check, and to forward on a shared fetch.
    pub fn token(&self) -> Option<&'a str> {
        self.viewer.or(self.forwarded)
    }

    /// The token to write into a viewer's playlist: only a viewer's own.
    pub fn viewer_token(&self) -> Option<&'a str> {
        self.viewer
    }

    /// The video of `/hls/{id}/…`.
    fn video(&self) -> Option<Uuid> {
        Uuid::try_parse(self.path.strip_prefix("/hls/")?.split('/').next()?).ok()
    }
}

/// Verifies tokens and counts refusals.
#[derive(Clone)]
pub struct Gate {
    verifier: Verifier,
    refusals: prometheus::IntCounterVec,
}

impl Gate {
    pub fn new(verifier: Verifier, refusals: prometheus::IntCounterVec) -> Self {
        Self { verifier, refusals }
    }

    /// Whether an answer with `stored` headers may go to this request:
    /// Ok(signed) if so, else the 403 to send instead (counted).
    // The error is the response itself; boxing it would only move the allocation.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, stored: &HeaderMap, ticket: &Ticket) -> Result<bool, Response> {
        if !is_signed(stored) {
            return Ok(false);
        }
        let checked = match ticket.video() {
            Some(video) => self.verifier.verify(ticket.token(), video),
            // The origin never marks a path without a video id; refuse rather than guess.
            None => Err(shared::playback::Refusal::OtherVideo),
        };
        match checked {
            Ok(_) => Ok(true),
            Err(refusal) => {
                self.refusals.with_label_values(&[refusal.label()]).inc();
                let mut res = refusal.problem().into_response();
                res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Err(mark(res))
            }
        }
    }
}

/// Marks an answer as signed (a 304 or a rewritten playlist is built
/// without the stored headers).
pub fn mark(mut res: Response) -> Response {
    res.headers_mut().insert(ACCESS_HEADER, HeaderValue::from_static(ACCESS_SIGNED));
    res
}

/// Distinct Cache-Control values remembered per thread: an origin has a
/// handful of policies, and every signed hit needs the rewrite of one.
const REMEMBERED_POLICIES: usize = 16;

thread_local! {
    static REWRITTEN: std::cell::RefCell<Vec<(HeaderValue, HeaderValue)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The Cache-Control a viewer gets for a signed answer: `private` instead
/// of `public` and without `s-maxage` (shared caches only), other
/// directives as the origin gave them; unchanged if already private or
/// no-store. Remembered per thread, so a hit pays a comparison, not a parse.
pub fn viewer_cache_control(origin: Option<&HeaderValue>) -> HeaderValue {
    let Some(origin) = origin else { return HeaderValue::from_static("private") };
    if let Some(known) = REWRITTEN.with_borrow(|r| r.iter().find(|(from, _)| from == origin).map(|(_, to)| to.clone())) {
        return known;
    }
    let rewritten = rewrite_cache_control(origin);
    REWRITTEN.with_borrow_mut(|r| {
        if r.len() >= REMEMBERED_POLICIES {
            r.remove(0);
        }
        r.push((origin.clone(), rewritten.clone()));
    });
    rewritten
}

fn rewrite_cache_control(origin: &HeaderValue) -> HeaderValue {
    let Ok(cc) = origin.to_str() else { return HeaderValue::from_static("private") };
    let directives: Vec<&str> = cc.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.iter().any(|d| d.eq_ignore_ascii_case("private") || d.eq_ignore_ascii_case("no-store")) {
        return origin.clone();
    }
    let kept = directives.into_iter().filter(|d| {
        let lower = d.to_ascii_lowercase();
        lower != "public" && !lower.starts_with("s-maxage")
    });
    let value = std::iter::once("private").chain(kept).collect::<Vec<_>>().join(", ");
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("private"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_answer_turns_private_for_the_viewer_and_keeps_its_lifetimes() {
        let cc = |v: &str| viewer_cache_control(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(cc("public, max-age=31536000, immutable, stale-if-error=86400"), "private, max-age=31536000, immutable, stale-if-error=86400");
        assert_eq!(cc("max-age=60, s-maxage=600"), "private, max-age=60");
        assert_eq!(cc("private, no-store"), "private, no-store");
        assert_eq!(cc("no-store"), "no-store");
        assert_eq!(viewer_cache_control(None), "private");
        assert_eq!(cc("public, max-age=60"), "private, max-age=60", "remembered: the same answer again");
        for i in 0..2 * REMEMBERED_POLICIES {
            assert_eq!(cc(&format!("max-age={i}")), format!("private, max-age={i}"), "bounded, still right");
        }
    }

    #[test]
    fn tokens_come_from_the_query_or_an_edge_in_front_and_the_video_from_the_path() {
        let id = Uuid::new_v4();
        let uri: Uri = format!("/hls/{id}/720p/seg_00001.m4s?sid=abc&token=k.p.s").parse().unwrap();
        let none = HeaderMap::new();
        let t = Ticket::of(&uri, &none);
        assert_eq!((t.token(), t.viewer_token(), t.video()), (Some("k.p.s"), Some("k.p.s"), Some(id)));
        let mut fwd = HeaderMap::new();
        fwd.insert(shared::playback::FORWARDED_TOKEN_HEADER, HeaderValue::from_static("f.p.s"));
        let uri: Uri = format!("/hls/{id}/720p/index.m3u8").parse().unwrap();
        let t = Ticket::of(&uri, &fwd);
        assert_eq!((t.token(), t.viewer_token()), (Some("f.p.s"), None), "a forwarded token is checked, never written into a playlist");
        assert_eq!(Ticket::of(&"/steering/x".parse().unwrap(), &none).video(), None);
    }
}
