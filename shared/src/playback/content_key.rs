//! Content keys of encrypted videos (AES-128, one per video), kept in
//! PostgreSQL wrapped under a master key (`CONTENT_MASTER_KEYS`, AEAD:
//! XChaCha20-Poly1305 with a random 24-byte nonce, the video id as
//! associated data so a wrapped key cannot be moved to another video).
//!
//! Master keys rotate by id: the first wraps, every listed one unwraps, and
//! [`ContentKeys::rewrap`] moves rows to the first without touching media.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sqlx::PgPool;
use uuid::Uuid;

/// `kid:base64url(32 bytes)` entries separated by commas; the first wraps.
#[derive(Clone, Default)]
pub struct MasterKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(k, _)| k)).finish()
    }
}

impl FromStr for MasterKeys {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let keys = super::keyed_entries(s)?;
        if keys.is_empty() {
            return Err("no master key given".into());
        }
        Ok(Self { keys })
    }
}

const NONCE: usize = 24;

impl MasterKeys {
    fn current(&self) -> &(String, [u8; 32]) {
        &self.keys[0]
    }

    /// (master key id, nonce ‖ ciphertext ‖ tag).
    pub fn wrap(&self, video: Uuid, key: &[u8; 16]) -> (String, Vec<u8>) {
        let (kid, master) = self.current();
        let nonce: [u8; NONCE] = rand::random();
        let sealed = XChaCha20Poly1305::new(master.into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: key, aad: video.as_bytes() })
            .expect("encrypting 16 bytes cannot fail");
        (kid.clone(), [&nonce[..], &sealed].concat())
    }

    pub fn unwrap(&self, video: Uuid, kid: &str, wrapped: &[u8]) -> anyhow::Result<[u8; 16]> {
        let (_, master) = self.keys.iter().find(|(k, _)| k == kid).with_context(|| format!("master key {kid:?} is not configured (CONTENT_MASTER_KEYS)"))?;
        anyhow::ensure!(wrapped.len() > NONCE, "wrapped key too short");
        let (nonce, sealed) = wrapped.split_at(NONCE);
        let key = XChaCha20Poly1305::new(master.into())
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: video.as_bytes() })
            .map_err(|_| anyhow::anyhow!("content key of {video} does not open under master key {kid:?}"))?;
        key.try_into().map_err(|_| anyhow::anyhow!("content key of {video} is not 16 bytes"))
    }
}

/// The `video_keys` table.
#[derive(Clone)]
pub struct ContentKeys {
    pool: PgPool,
    masters: MasterKeys,
}

impl ContentKeys {
    pub fn new(pool: PgPool, masters: MasterKeys) -> Self {
        Self { pool, masters }
    }

    /// The video's key, made now if it has none. A retried transcode gets
    /// the key the first attempt made, so a half-published attempt and the
    /// committed one never disagree.
    pub async fn get_or_create(&self, video: Uuid) -> anyhow::Result<[u8; 16]> {
        let fresh: [u8; 16] = rand::random();
        let (kid, wrapped) = self.masters.wrap(video, &fresh);
        sqlx::query("INSERT INTO video_keys (video_id, master_kid, wrapped) VALUES ($1, $2, $3) ON CONFLICT (video_id) DO NOTHING")
            .bind(video)
            .bind(&kid)
            .bind(&wrapped)
            .execute(&self.pool)
            .await
            .context("storing a content key")?;
        self.get(video).await?.context("content key vanished after insert")
    }

    pub async fn get(&self, video: Uuid) -> anyhow::Result<Option<[u8; 16]>> {
        let row: Option<(String, Vec<u8>)> = sqlx::query_as("SELECT master_kid, wrapped FROM video_keys WHERE video_id = $1").bind(video).fetch_optional(&self.pool).await?;
        row.map(|(kid, w)| self.masters.unwrap(video, &kid, &w)).transpose()
    }

    /// Re-wraps every key not under the current master key; returns how many.
    pub async fn rewrap(&self) -> anyhow::Result<u64> {
        let current = &self.masters.current().0;
        let rows: Vec<(Uuid, String, Vec<u8>)> = sqlx::query_as("SELECT video_id, master_kid, wrapped FROM video_keys WHERE master_kid <> $1").bind(current).fetch_all(&self.pool).await?;
        let mut n = 0;
        for (video, kid, wrapped) in rows {
            let key = self.masters.unwrap(video, &kid, &wrapped)?;
            let (new_kid, rewrapped) = self.masters.wrap(video, &key);
            n += sqlx::query("UPDATE video_keys SET master_kid = $2, wrapped = $3 WHERE video_id = $1 AND master_kid = $4")
                .bind(video)
                .bind(&new_kid)
                .bind(&rewrapped)
                .bind(&kid)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn masters(spec: &[(&str, u8)]) -> MasterKeys {
        spec.iter().map(|(k, b)| format!("{k}:{}", URL_SAFE_NO_PAD.encode([*b; 32]))).collect::<Vec<_>>().join(",").parse().unwrap()
    }

    #[test]
    fn a_wrapped_key_opens_only_under_its_master_and_for_its_video() {
        let m = masters(&[("m1", 1)]);
        let (video, key) = (Uuid::new_v4(), [9u8; 16]);
        let (kid, w) = m.wrap(video, &key);
        assert_eq!(kid, "m1");
        assert_eq!(m.unwrap(video, "m1", &w).unwrap(), key);
        assert!(m.unwrap(Uuid::new_v4(), "m1", &w).is_err(), "bound to its video");
        assert!(masters(&[("m1", 2)]).unwrap(video, "m1", &w).is_err(), "another master");
        assert!(m.unwrap(video, "m2", &w).is_err());
        let rotated = masters(&[("m2", 2), ("m1", 1)]);
        assert_eq!(rotated.unwrap(video, "m1", &w).unwrap(), key, "old master still opens after rotation");
        assert_eq!(rotated.wrap(video, &key).0, "m2");
        assert!("m1:short".parse::<MasterKeys>().is_err() && "".parse::<MasterKeys>().is_err());
    }
}
