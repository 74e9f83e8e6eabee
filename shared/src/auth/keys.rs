//! API keys and their principals, in PostgreSQL.
//!
//! A key is `vpk_` and 43 base64url characters: 32 random bytes. Only its
//! SHA-256 is stored; the key itself is shown once, in the answer that
//! created it. A lookup is one index probe on the hash.

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Principal, Role};

const KEY_PREFIX: &str = "vpk_";
/// Characters of a key shown in listings: enough to tell keys apart, far too few to guess the rest.
const SHOWN: usize = KEY_PREFIX.len() + 6;

/// A key as a client sends it. Never logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

impl ApiKey {
    /// 32 bytes from the OS's CSPRNG (rand's thread RNG is seeded from it and reseeds).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        ApiKey(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A well-formed key, or None. Only the shape is checked here.
    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix(KEY_PREFIX)?;
        let ok = body.len() == 43 && URL_SAFE_NO_PAD.decode(body).is_ok_and(|b| b.len() == 32);
        ok.then(|| ApiKey(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn prefix(&self) -> &str {
        &self.0[..SHOWN]
    }

    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

/// A key as listed: never the key itself.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: Uuid,
    pub principal_id: Uuid,
    pub role: String,
    pub prefix: String,
    pub label: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Clone)]
pub struct KeyStore {
    pool: PgPool,
}

const INFO: &str = "k.id, k.principal_id, p.role, k.prefix, k.label, k.created_at, k.last_used_at, k.revoked_at";

impl KeyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The principal a key belongs to, if the key exists and is not revoked.
    /// Marks it used (at most once a minute, so a busy key is not one write per lookup).
    pub async fn lookup(&self, hash: &[u8; 32]) -> anyhow::Result<Option<Principal>> {
        let row: Option<(Uuid, Uuid, String, Option<OffsetDateTime>)> = sqlx::query_as(
            "SELECT k.id, p.id, p.role, k.last_used_at FROM api_keys k JOIN principals p ON p.id = k.principal_id \
             WHERE k.hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await
        .context("looking up an API key")?;
        let Some((key_id, id, role, last_used)) = row else { return Ok(None) };
        // Off the request path: the write waits for a WAL flush, which
        // bench-auth measured at several ms at p99 when it was awaited here.
        if last_used.is_none_or(|t| OffsetDateTime::now_utc() - t > time::Duration::minutes(1)) {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                if let Err(e) = sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1").bind(key_id).execute(&pool).await {
                    tracing::debug!(error = %e, "could not record an API key's last use");
                }
            });
        }
        let role = role.parse().map_err(anyhow::Error::msg)?;
        Ok(Some(Principal { id, role, key_id }))
    }

    /// A new key. `owner` None creates a new principal with `role`; Some adds
    /// a key to an existing principal (whose role it keeps).
    pub async fn create(&self, owner: Option<Uuid>, role: Role, label: &str) -> anyhow::Result<(ApiKey, KeyInfo)> {
        let key = ApiKey::generate();
        let info = self.insert(&key, owner, role, label).await?;
        Ok((key, info))
    }

    /// Stores a key given by the deployment (the first admin key) unless it is
    /// already stored. Returns whether it was new.
    pub async fn ensure(&self, key: &ApiKey, role: Role, label: &str) -> anyhow::Result<bool> {
        let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM api_keys WHERE hash = $1").bind(&key.hash()[..]).fetch_optional(&self.pool).await?;
        if exists.is_some() {
            return Ok(false);
        }
        self.insert(key, None, role, label).await?;
        Ok(true)
    }

    async fn insert(&self, key: &ApiKey, owner: Option<Uuid>, role: Role, label: &str) -> anyhow::Result<KeyInfo> {
        let mut tx = self.pool.begin().await?;
        let principal = match owner {
            Some(id) => id,
            None => {
                let id = Uuid::now_v7();
                sqlx::query("INSERT INTO principals (id, role, label) VALUES ($1, $2, $3)").bind(id).bind(role.as_str()).bind(label).execute(&mut *tx).await?;
                id
            }
        };
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO api_keys (id, principal_id, hash, prefix, label) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(principal)
            .bind(&key.hash()[..])
            .bind(key.prefix())
            .bind(label)
            .execute(&mut *tx)
            .await
            .context("storing an API key")?;
        let info = sqlx::query_as(&format!("SELECT {INFO} FROM api_keys k JOIN principals p ON p.id = k.principal_id WHERE k.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(info)
    }

    /// Keys of one principal, or of everyone (`None`, for admins); newest first.
    pub async fn list(&self, principal: Option<Uuid>) -> anyhow::Result<Vec<KeyInfo>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {INFO} FROM api_keys k JOIN principals p ON p.id = k.principal_id \
             WHERE ($1::uuid IS NULL OR k.principal_id = $1) ORDER BY k.created_at DESC LIMIT 1000"
        ))
        .bind(principal)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a key of `principal` (any key for `None`). Returns the key's
    /// hash if it was found (revoked now or before), so caches can drop it.
    pub async fn revoke(&self, key_id: Uuid, principal: Option<Uuid>) -> anyhow::Result<Option<[u8; 32]>> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND ($2::uuid IS NULL OR principal_id = $2) RETURNING hash",
        )
        .bind(key_id)
        .bind(principal)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(h,)| h.try_into().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_well_formed_and_hidden_when_printed() {
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        assert_ne!(a, b);
        assert_eq!(ApiKey::parse(a.expose()), Some(a.clone()));
        assert!(!format!("{a:?}").contains(&a.expose()[SHOWN..]));
        assert_eq!(a.prefix().len(), SHOWN);
        assert_ne!(a.hash(), b.hash());
        for bad in ["", "vpk_", "vpk_short", &a.expose()[1..], &format!("{}x", a.expose()), "Bearer x"] {
            assert!(ApiKey::parse(bad).is_none(), "{bad:?}");
        }
    }
}
