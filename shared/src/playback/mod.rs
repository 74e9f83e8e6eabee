//! Protected playback: who may fetch the bytes of an unlisted or private video.
//!
//! - [`token`]: signed playback tokens (Ed25519 over video id, expiry and key
//!   id). The origin signs; edges hold only public keys and verify locally.
//! - [`content_key`]: each encrypted video's AES-128 key, wrapped under a
//!   master key in PostgreSQL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub mod content_key;
pub mod token;

pub use content_key::{ContentKeys, MasterKeys};
pub use token::{PlaybackToken, Refusal, Signer, Verifier};

/// The query parameter a token travels in, on every playlist, segment and key URI.
pub const TOKEN_PARAM: &str = "token";

/// The header the origin puts on every object of a video that is not public,
/// so an edge knows, for a cached copy too, that a request needs a token.
/// Edges pass it on (it only says "this needs a token"), so an edge in front
/// of another edge (tiered caching) knows too.
pub const ACCESS_HEADER: &str = "x-playback-access";
pub const ACCESS_SIGNED: &str = "signed";

/// The content key's file name under `/hls/{id}/`, served by the origin only
/// with a valid token (or for a public video), never cached.
pub const KEY_OBJECT: &str = "content.key";

/// How an edge forwards the token of the viewer whose request started a
/// shared fetch (to the origin or a parent edge). A header, not the query:
/// a token in the query asks for a per-viewer playlist (every URI tagged
/// with it, `private, no-store`), while a shared fetch must get the stored,
/// cacheable object.
pub const FORWARDED_TOKEN_HEADER: &str = "x-playback-token";

/// The token in a query string, if any.
pub fn token_in(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// The token forwarded by an edge in [`FORWARDED_TOKEN_HEADER`], if any.
pub fn forwarded_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(FORWARDED_TOKEN_HEADER).and_then(|v| v.to_str().ok())
}

fn valid_kid(kid: &str) -> bool {
    crate::extract::is_token(kid, 16) && !kid.contains('.')
}

/// `kid:base64url(32 bytes)` entries separated by commas: the one format of
/// every key list here (signing, public and master keys), rotated by id.
pub(crate) fn keyed_entries(s: &str) -> Result<Vec<(String, [u8; 32])>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (kid, b64) = e.split_once(':').ok_or_else(|| format!("{e:?} is not kid:base64url-key"))?;
            if !valid_kid(kid) {
                return Err(format!("key id {kid:?} is not 1-16 characters of [A-Za-z0-9_-]"));
            }
            let bytes = URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).map_err(|e| format!("key {kid}: {e}"))?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| format!("key {kid} is not 32 bytes"))?;
            Ok((kid.to_owned(), key))
        })
        .collect()
}

