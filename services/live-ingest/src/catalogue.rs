//! Live streams in PostgreSQL: created by creators, found by the hash of a
//! publisher's stream key or by a viewer's playback id, moved between
//! [`LiveState`]s by the ingest. The stream key is shown once, at creation;
//! only its SHA-256 is stored (32 random bytes need no salt).

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// Where a live stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveState {
    /// Created, or between broadcasts.
    Idle,
    /// A publisher is on, or away for less than the grace period.
    Live,
    /// The last broadcast ended; its recording went to the catalogue.
    Ended,
}

impl LiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "idle" => Self::Idle,
            "live" => Self::Live,
            "ended" => Self::Ended,
            other => anyhow::bail!("unknown live state {other:?} in the database"),
        })
    }
}

/// A stream key: `lsk_` and 43 base64url characters (32 random bytes).
#[derive(Clone)]
pub struct StreamKey(String);

impl StreamKey {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        use base64::Engine;
        Self(format!("lsk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up; any string a publisher sends hashes.
    pub fn hash_of(raw: &str) -> [u8; 32] {
        Sha256::digest(raw.as_bytes()).into()
    }

    pub fn prefix(&self) -> &str {
        &self.0[..10]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveStream {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub key_prefix: String,
    pub playback_id: Uuid,
    pub state: LiveState,
    pub replay_video_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

type Row = (Uuid, Uuid, String, String, Uuid, String, Option<Uuid>, time::OffsetDateTime);

const COLUMNS: &str = "id, owner_id, title, key_prefix, playback_id, state, replay_video_id, created_at";

fn from_row(r: Row) -> anyhow::Result<LiveStream> {
    Ok(LiveStream { id: r.0, owner_id: r.1, title: r.2, key_prefix: r.3, playback_id: r.4, state: LiveState::parse(&r.5)?, replay_video_id: r.6, created_at: r.7 })
}

#[derive(Clone)]
pub struct LiveStreams {
    pool: PgPool,
}

impl LiveStreams {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A new stream and its key (returned once, never stored).
    pub async fn create(&self, owner: Uuid, title: &str) -> anyhow::Result<(LiveStream, StreamKey)> {
        let key = StreamKey::generate();
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO live_streams (id, owner_id, title, key_hash, key_prefix, playback_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(title)
        .bind(&StreamKey::hash_of(key.expose())[..])
        .bind(key.prefix())
        .bind(Uuid::new_v4())
        .fetch_one(&self.pool)
        .await?;
        Ok((from_row(row)?, key))
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<LiveStream>> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM live_streams WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.map(from_row).transpose()
    }

    pub async fn by_key(&self, raw_key: &str) -> anyhow::Result<Option<LiveStream>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM live_streams WHERE key_hash = $1")).bind(&StreamKey::hash_of(raw_key)[..]).fetch_optional(&self.pool).await?;
        row.map(from_row).transpose()
    }

    /// Newest first; `owner` None lists every stream (admins).
    pub async fn list(&self, owner: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<LiveStream>> {
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM live_streams WHERE ($1::uuid IS NULL OR owner_id = $1) ORDER BY id DESC LIMIT $2"))
            .bind(owner)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(from_row).collect()
    }

    pub async fn set_state(&self, id: Uuid, state: LiveState) -> anyhow::Result<()> {
        sqlx::query("UPDATE live_streams SET state = $2, updated_at = now() WHERE id = $1").bind(id).bind(state.as_str()).execute(&self.pool).await?;
        Ok(())
    }

    /// The broadcast ended and its recording is video `video`.
    pub async fn ended(&self, id: Uuid, video: Option<Uuid>) -> anyhow::Result<()> {
        sqlx::query("UPDATE live_streams SET state = 'ended', replay_video_id = COALESCE($2, replay_video_id), updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(video)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, id: Uuid) -> anyhow::Result<bool> {
        Ok(sqlx::query("DELETE FROM live_streams WHERE id = $1").bind(id).execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Streams left `live` by an ingest that died: nothing publishes to them now.
    pub async fn reset_orphans(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query("UPDATE live_streams SET state = 'idle', updated_at = now() WHERE state = 'live'").execute(&self.pool).await?.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_43_base64url_characters_and_hash_stably() {
        let k = StreamKey::generate();
        assert!(k.expose().starts_with("lsk_"));
        assert_eq!(k.expose().len(), 4 + 43);
        assert!(k.expose()[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(StreamKey::hash_of(k.expose()), StreamKey::hash_of(k.expose()));
        assert_ne!(StreamKey::generate().expose(), k.expose());
    }
}
