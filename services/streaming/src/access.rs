//! Who may fetch the objects of a video: the catalogue facts delivery needs
//! (served folder, owner, visibility, encryption), and the token check for
//! videos that are not public.
//!
//! A public video is served exactly as before issue 12: no token, no extra
//! header. Every answer for an unlisted or private one (200, 206, 304, 404,
//! 403 alike) carries `x-playback-access: signed`, so an edge knows, for a
//! cached copy too, that a request for it needs a token; a request without a
//! valid one gets 403 problem+json, counted by reason. The token comes from
//! the query (a viewer) or from `x-playback-token` (an edge forwarding the
//! token of the viewer whose request started its shared fetch).
//!
//! Facts are cached with the readiness (10 s) and forgotten when a purge of
//! the video is published (every visibility change and deletion sends one),
//! so the edges' refetch after that purge sees the new visibility.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use shared::playback::{forwarded_token, token_in, ACCESS_HEADER, ACCESS_SIGNED};
use shared::videos::Visibility;
use uuid::Uuid;

use crate::hls::OriginState;

/// A ready video as delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The S3 folder of the committed attempt.
    pub prefix: String,
    pub owner: Option<Uuid>,
    pub visibility: Visibility,
    pub encrypted: bool,
}

impl Served {
    pub fn is_protected(&self) -> bool {
        self.visibility.is_protected()
    }
}

/// The token a request carries: from the query, else an edge's forwarding header.
pub fn request_token<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> Option<&'a str> {
    token_in(query).or_else(|| forwarded_token(headers))
}

/// Marks an answer about a protected video (see the module doc).
pub fn mark_signed(mut res: Response) -> Response {
    res.headers_mut().insert(ACCESS_HEADER, HeaderValue::from_static(ACCESS_SIGNED));
    res
}

impl OriginState {
    /// Ok for a public video or a valid token; otherwise the 403, counted.
    // The error is the response itself; boxing it would only move the allocation.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, video: Uuid, served: &Served, token: Option<&str>) -> Result<(), Response> {
        if !served.is_protected() {
            return Ok(());
        }
        match self.verifier.verify(token, video) {
            Ok(_) => Ok(()),
            Err(refusal) => {
                self.metrics.token_refusals.with_label_values(&[refusal.label()]).inc();
                Err(refusal.problem().into_response())
            }
        }
    }
}
