//! Signed playback tokens.
//!
//! `{kid}.{payload}.{signature}`: `payload` is base64url of the video id (16
//! bytes) and the expiry (8 bytes, Unix seconds, big-endian); `signature` is
//! Ed25519 over `{kid}.{payload}`. Ed25519 because verifiers then hold only
//! public keys: an edge that is broken into cannot mint tokens. Keys rotate
//! by id: the first signing key signs, every listed key verifies.
//!
//! An edge sees the same token on every segment of a view, so a verified
//! token is remembered (bounded; dropped after ten idle minutes, and its expiry
//! checked on every use) and a
//! cache hit costs one hash lookup, not a signature check.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use uuid::Uuid;

/// Why a token was refused; the label of `playback_token_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    OtherVideo,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::OtherVideo => "other_video",
        }
    }

    /// The 403 problem+json a refused request gets (origin and edges alike).
    pub fn problem(self) -> crate::error::Problem {
        let code = format!("playback-token-{}", self.label().replace('_', "-"));
        crate::error::Problem::new(axum::http::StatusCode::FORBIDDEN, &code, "Playback token refused", self.detail()).with("reason", self.label())
    }

    /// The sentence a viewer (or the player's developer) can act on.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "This video is not public: play it from the URL GET /api/v1/videos/{id}/play returns.",
            Refusal::Malformed => "The playback token is malformed. Ask GET /api/v1/videos/{id}/play for a new URL.",
            Refusal::UnknownKey => "The playback token was signed with a key this server no longer knows. Ask for a new URL.",
            Refusal::BadSignature => "The playback token's signature is not valid.",
            Refusal::Expired => "The playback token has expired. Ask GET /api/v1/videos/{id}/play for a new URL.",
            Refusal::OtherVideo => "The playback token is for another video.",
        }
    }
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaybackToken {
    pub video: Uuid,
    pub expires: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signing keys (`PLAYBACK_SIGNING_KEYS`); the first signs.
#[derive(Clone, Default)]
pub struct Signer {
    keys: Vec<(String, SigningKey)>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(k, _)| k)).finish()
    }
}

impl FromStr for Signer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let keys: Vec<_> = super::keyed_entries(s)?.into_iter().map(|(kid, seed)| (kid, SigningKey::from_bytes(&seed))).collect();
        if keys.is_empty() {
            return Err("no key given".into());
        }
        Ok(Signer { keys })
    }
}

impl Signer {
    /// A token for `video` valid for `ttl`.
    pub fn sign(&self, video: Uuid, ttl: Duration) -> String {
        self.issue(video, ttl).0
    }

    /// [`Self::sign`], with what the token says (its expiry, for the answer).
    pub fn issue(&self, video: Uuid, ttl: Duration) -> (String, PlaybackToken) {
        let (kid, key) = &self.keys[0];
        let expires = now_secs() + ttl.as_secs();
        let mut payload = [0u8; 24];
        payload[..16].copy_from_slice(video.as_bytes());
        payload[16..].copy_from_slice(&expires.to_be_bytes());
        let signed = format!("{kid}.{}", URL_SAFE_NO_PAD.encode(payload));
        let sig = key.sign(signed.as_bytes());
        (format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes())), PlaybackToken { video, expires })
    }

    /// The public half of every key, for a verifier in the same process.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.keys.iter().map(|(k, s)| (k.clone(), s.verifying_key())).collect())
    }

    /// `kid:public` for every key: what edges are configured with.
    pub fn public_keys(&self) -> String {
        self.keys.iter().map(|(k, s)| format!("{k}:{}", URL_SAFE_NO_PAD.encode(s.verifying_key().to_bytes()))).collect::<Vec<_>>().join(",")
    }
}

/// Verifies tokens with public keys only (`PLAYBACK_PUBLIC_KEYS`).
#[derive(Clone)]
pub struct Verifier {
    keys: std::sync::Arc<HashMap<String, VerifyingKey>>,
    /// Tokens whose signature checked out, with what they say.
    verified: moka::sync::Cache<String, PlaybackToken>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(HashMap::new())
    }
}

/// Verified tokens remembered per process: each is ~150 bytes.
const REMEMBERED: u64 = 200_000;

impl FromStr for Verifier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut keys = HashMap::new();
        for (kid, bytes) in super::keyed_entries(s)? {
            let key = VerifyingKey::from_bytes(&bytes).map_err(|e| format!("key {kid}: {e}"))?;
            keys.insert(kid, key);
        }
        Ok(Self::new(keys))
    }
}

impl Verifier {
    fn new(keys: HashMap<String, VerifyingKey>) -> Self {
        // A remembered token is re-checked for expiry on every use; the
        // time-to-idle only bounds how long a finished view's token stays.
        let verified = moka::sync::Cache::builder().max_capacity(REMEMBERED).time_to_idle(Duration::from_secs(600)).build();
        Self { keys: std::sync::Arc::new(keys), verified }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `token` for `video` now.
    pub fn verify(&self, token: Option<&str>, video: Uuid) -> Result<PlaybackToken, Refusal> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Refusal::Missing)?;
        match self.verified.get(token) {
            Some(t) => check_claims(t, video),
            None => {
                // What the token claims is checked before its signature: a
                // token for another video or past its expiry costs no
                // Ed25519 verification, whoever sends it.
                let (claims, kid, signed, sig) = self.decode(token)?;
                let t = check_claims(claims, video)?;
                self.check_signature(kid, signed, sig)?;
                self.verified.insert(token.to_owned(), t);
                Ok(t)
            }
        }
    }

    /// What a token says, unverified, and its parts.
    fn decode<'a>(&self, token: &'a str) -> Result<(PlaybackToken, &'a str, &'a str, &'a str), Refusal> {
        // Bounded before any decoding: a token is ~130 characters.
        if token.len() > 256 {
            return Err(Refusal::Malformed);
        }
        let (signed, sig) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let (kid, payload) = signed.split_once('.').ok_or(Refusal::Malformed)?;
        if !self.keys.contains_key(kid) {
            return Err(Refusal::UnknownKey);
        }
        let payload: [u8; 24] = URL_SAFE_NO_PAD.decode(payload).ok().and_then(|b| b.try_into().ok()).ok_or(Refusal::Malformed)?;
        let video = Uuid::from_slice(&payload[..16]).map_err(|_| Refusal::Malformed)?;
        let expires = u64::from_be_bytes(payload[16..].try_into().expect("8 bytes"));
        Ok((PlaybackToken { video, expires }, kid, signed, sig))
    }

    fn check_signature(&self, kid: &str, signed: &str, sig: &str) -> Result<(), Refusal> {
        let sig: [u8; 64] = URL_SAFE_NO_PAD.decode(sig).ok().and_then(|b| b.try_into().ok()).ok_or(Refusal::Malformed)?;
        self.keys[kid].verify(signed.as_bytes(), &Signature::from_bytes(&sig)).map_err(|_| Refusal::BadSignature)
    }
}

fn check_claims(t: PlaybackToken, video: Uuid) -> Result<PlaybackToken, Refusal> {
    if t.video != video {
        return Err(Refusal::OtherVideo);
    }
    if t.expires <= now_secs() {
        return Err(Refusal::Expired);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(kid: &str, seed: u8) -> Signer {
        format!("{kid}:{}", URL_SAFE_NO_PAD.encode([seed; 32])).parse().unwrap()
    }

    #[test]
    fn a_signed_token_verifies_for_its_video_until_it_expires() {
        let s = signer("k1", 7);
        let v: Verifier = s.public_keys().parse().unwrap();
        let video = Uuid::new_v4();
        let t = s.sign(video, Duration::from_secs(60));
        assert_eq!(v.verify(Some(&t), video).unwrap().video, video);
        assert_eq!(v.verify(Some(&t), video).unwrap().video, video, "remembered");
        assert_eq!(v.verify(Some(&t), Uuid::new_v4()), Err(Refusal::OtherVideo));
        assert_eq!(v.verify(None, video), Err(Refusal::Missing));
        let expired = s.sign(video, Duration::ZERO);
        assert_eq!(v.verify(Some(&expired), video), Err(Refusal::Expired));
    }

    #[test]
    fn forged_foreign_and_garbled_tokens_are_refused() {
        let (s, other) = (signer("k1", 7), signer("k1", 8));
        let v = s.verifier();
        let video = Uuid::new_v4();
        assert_eq!(v.verify(Some(&other.sign(video, Duration::from_secs(60))), video), Err(Refusal::BadSignature));
        assert_eq!(v.verify(Some(&signer("k9", 7).sign(video, Duration::from_secs(60))), video), Err(Refusal::UnknownKey));
        let good = s.sign(video, Duration::from_secs(60));
        // Extending the expiry in the payload breaks the signature.
        let (kid, rest) = good.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();
        let mut p = URL_SAFE_NO_PAD.decode(payload).unwrap();
        p[23] ^= 1;
        let tampered = format!("{kid}.{}.{sig}", URL_SAFE_NO_PAD.encode(p));
        assert_eq!(v.verify(Some(&tampered), video), Err(Refusal::BadSignature));
        for bad in ["x", "k1.a.b", &"k1.".repeat(100), &good[..good.len() - 2]] {
            assert!(matches!(v.verify(Some(bad), video), Err(Refusal::Malformed | Refusal::BadSignature)), "{bad}");
        }
    }

    #[test]
    fn rotation_signs_with_the_first_key_and_verifies_with_all() {
        let old = signer("old", 1);
        let both: Signer = format!("new:{},old:{}", URL_SAFE_NO_PAD.encode([2u8; 32]), URL_SAFE_NO_PAD.encode([1u8; 32])).parse().unwrap();
        let v: Verifier = both.public_keys().parse().unwrap();
        let video = Uuid::new_v4();
        assert!(v.verify(Some(&old.sign(video, Duration::from_secs(60))), video).is_ok());
        assert!(both.sign(video, Duration::from_secs(60)).starts_with("new."));
        assert!("k:short".parse::<Signer>().is_err() && "".parse::<Signer>().is_err() && "bad id!:x".parse::<Verifier>().is_err());
    }
}
