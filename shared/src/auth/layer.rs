//! The authentication layer, written once for every service.
//!
//! `Authorization: Bearer <key>` is resolved to a [`Principal`] and put in the
//! request's extensions as a [`Caller`]; no header is an anonymous caller
//! (public reads stay open), a malformed, unknown or revoked key is a 401
//! before any handler runs. Lookups are cached for `AUTH_CACHE_TTL` (2 s by
//! default) in a bounded cache, so a revoked key stops working on every
//! replica within that time, and a busy key costs one query per TTL per replica.

use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::keys::{ApiKey, KeyStore};
use super::Principal;
use crate::configuration::{Env, Seconds};
use crate::error::Problem;

/// Keys remembered at once per process (a few MiB at most).
const CACHED_KEYS: u64 = 100_000;

/// Resolves keys to principals, through a short-lived bounded cache.
#[derive(Clone)]
pub struct Authenticator {
    keys: KeyStore,
    cache: moka::future::Cache<[u8; 32], Option<Principal>>,
}

/// Settings of the layer, read by every service that authenticates.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// How long a lookup (positive or negative) is trusted.
    pub cache_ttl: Seconds,
}

impl AuthSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self { cache_ttl: env.optional("AUTH_CACHE_TTL", "2s", "how long an API key lookup is cached; a revoked key works at most this long on each replica") }
    }

    pub fn authenticator(&self, pool: sqlx::PgPool) -> Authenticator {
        Authenticator::new(KeyStore::new(pool), self.cache_ttl.0)
    }
}

impl Authenticator {
    pub fn new(keys: KeyStore, ttl: Duration) -> Self {
        Self { keys, cache: moka::future::Cache::builder().max_capacity(CACHED_KEYS).time_to_live(ttl).build() }
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The caller a request's headers name.
    pub async fn caller(&self, authorization: Option<&HeaderValue>) -> Result<Caller, Problem> {
        let Some(value) = authorization else { return Ok(Caller(None)) };
        let key = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).and_then(ApiKey::parse).ok_or_else(|| {
            unauthorized("api-key-malformed", "Malformed API key", "Send Authorization: Bearer vpk_… with a key from POST /api/v1/keys.")
        })?;
        let hash = key.hash();
        let keys = self.keys.clone();
        let found = self.cache.try_get_with(hash, async move { keys.lookup(&hash).await }).await.map_err(|e| {
            Problem::unavailable("the key store (PostgreSQL)", &anyhow::anyhow!("{e:#}"))
        })?;
        match found {
            Some(p) => Ok(Caller(Some(p))),
            None => Err(unauthorized("api-key-invalid", "Unknown or revoked API key", "This key does not exist or was revoked. Ask an admin for a new one.")),
        }
    }

    /// Forgets a key at once on this replica (others follow within the TTL).
    pub async fn forget(&self, hash: &[u8; 32]) {
        self.cache.invalidate(hash).await;
    }
}

fn unauthorized(code: &str, title: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, code, title, detail)
}

/// A 401 with the challenge RFC 6750 asks for.
pub fn challenge(p: Problem) -> Response {
    let mut res = p.into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"video-platform\""));
    res
}

/// The layer: `axum::middleware::from_fn_with_state(authenticator, authenticate)`.
pub async fn authenticate(State(auth): State<Authenticator>, mut req: Request, next: Next) -> Response {
    match auth.caller(req.headers().get(header::AUTHORIZATION)).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(p) if p.status == 401 => challenge(p),
        Err(p) => p.into_response(),
    }
}

/// Who is calling: `None` is anonymous. Routes outside the layer see anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller(pub Option<Principal>);

/// A refused caller: 401 (with its challenge) or 403, as problem+json.
#[derive(Debug, Clone)]
pub struct Denied(pub Problem);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        if self.0.status == 401 {
            challenge(self.0)
        } else {
            self.0.into_response()
        }
    }
}

impl Caller {
    /// Any key: 401 without one.
    // The error is the response itself; boxing it would only move the allocation.
    #[allow(clippy::result_large_err)]
    pub fn require(&self) -> Result<&Principal, Denied> {
        self.0.as_ref().ok_or_else(|| Denied(unauthorized("api-key-required", "API key required", "This operation needs Authorization: Bearer <API key>.")))
    }

    /// An admin key: 401 without a key, 403 with a creator's.
    #[allow(clippy::result_large_err)]
    pub fn require_admin(&self) -> Result<&Principal, Denied> {
        let p = self.require()?;
        if p.is_admin() {
            Ok(p)
        } else {
            Err(Denied(Problem::new(StatusCode::FORBIDDEN, "admin-required", "Admin key required", "This operation is for admins; a creator's key cannot do it.")))
        }
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref()
    }

    pub fn is_admin(&self) -> bool {
        self.0.as_ref().is_some_and(Principal::is_admin)
    }

    /// Whether this caller may act on a resource owned by `owner`.
    pub fn may_act_on(&self, owner: Option<uuid::Uuid>) -> bool {
        self.0.as_ref().is_some_and(|p| p.may_act_on(owner))
    }

    /// Whether this caller may see a video: its owner and admins always,
    /// anyone a public or unlisted one (unlisted: "whoever has the link").
    /// The one rule every service answers "404 or not" with.
    pub fn may_see(&self, owner: Option<uuid::Uuid>, visibility: crate::videos::Visibility) -> bool {
        visibility != crate::videos::Visibility::Private || self.may_act_on(owner)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_default())
    }
}
