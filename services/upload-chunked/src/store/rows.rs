//! Upload state in PostgreSQL: the `uploads` row, its S3 part list and its
//! concatenation links, plus the statements behind the writer lease.
//!
//! Writes of committed state take the lease holder and change the row only
//! while that holder still has the lease (a fencing token): a writer whose
//! lease lapsed gets [`LeaseLost`] instead of overwriting its successor.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use shared::videos::Visibility;

use super::{Kind, NewUpload};
use crate::checksum::ResumableSha256;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: Uuid,
    pub concat: String,
    pub length: Option<i64>,
    pub metadata: String,
    pub object_key: String,
    pub part_size: i64,
    pub s3_upload_id: Option<String>,
    pub parts_bytes: i64,
    pub tail_bytes: i64,
    pub upload_offset: i64,
    pub sha256_state: Vec<u8>,
    pub expires_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub video_id: Option<Uuid>,
    pub consumed_by: Option<Uuid>,
    pub failure: Option<String>,
    pub owner_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub visibility: Visibility,
}

const COLUMNS: &str = "id, concat, length, metadata, object_key, part_size, s3_upload_id, parts_bytes, tail_bytes, upload_offset, \
    sha256_state, expires_at, completed_at, video_id, consumed_by, failure, owner_id, visibility";

/// One committed S3 part.
#[derive(Debug, Clone)]
pub struct Part {
    pub number: i32,
    pub size: u64,
    pub etag: String,
}

/// Bytes made durable by one commit.
#[derive(Debug, Clone)]
pub struct Progress {
    pub new_parts: Vec<Part>,
    pub tail_bytes: u64,
    pub sha256: ResumableSha256,
}

#[derive(Clone)]
pub struct Rows {
    pool: PgPool,
}

impl Rows {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A new upload's row, and a final upload's links to its partials, in
    /// one transaction. `key` is where its bytes go.
    pub async fn insert(
        &self,
        new: &NewUpload,
        key: &str,
        part_size: u64,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let (concat, partials) = match &new.kind {
            Kind::Single => ("none", &[][..]),
            Kind::Partial => ("partial", &[][..]),
            Kind::Final(ids) => ("final", ids.as_slice()),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO uploads (id, concat, length, metadata, object_key, part_size, sha256_state, expires_at, owner_id, visibility) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(new.id)
        .bind(concat)
        .bind(new.length.map(|l| l as i64))
        .bind(&new.metadata)
        .bind(key)
        .bind(part_size as i64)
        .bind(ResumableSha256::default().to_bytes())
        .bind(expires_at)
        .bind(new.owner_id)
        .bind(new.visibility.as_str())
        .execute(&mut *tx)
        .await
        .context("inserting upload")?;
        for (pos, partial) in partials.iter().enumerate() {
            sqlx::query(
                "INSERT INTO upload_concat (final_id, position, partial_id) VALUES ($1, $2, $3)",
            )
            .bind(new.id)
            .bind(pos as i32)
            .bind(partial)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Row>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM uploads WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A final upload's partials in order, each with its length (None while
    /// deferred, or when the partial is gone).
    pub async fn partials_of(&self, final_id: Uuid) -> anyhow::Result<Vec<(Uuid, Option<i64>)>> {
        Ok(sqlx::query_as(
            "SELECT c.partial_id, p.length FROM upload_concat c LEFT JOIN uploads p ON p.id = c.partial_id \
             WHERE c.final_id = $1 ORDER BY c.position",
        )
        .bind(final_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn finals_waiting_on(&self, partial_id: Uuid) -> anyhow::Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT c.final_id FROM upload_concat c JOIN uploads u ON u.id = c.final_id \
             WHERE c.partial_id = $1 AND u.completed_at IS NULL",
        )
        .bind(partial_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn parts(&self, id: Uuid) -> anyhow::Result<Vec<Part>> {
        let rows: Vec<(i32, i64, String)> =
            sqlx::query_as("SELECT part_number, size, etag FROM upload_parts WHERE upload_id = $1 ORDER BY part_number")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(number, size, etag)| Part {
                number,
                size: size as u64,
                etag,
            })
            .collect())
    }

    /// Records the S3 multipart upload before any part is sent, so the
    /// sweeper can always find and abort it.
    pub async fn set_s3_upload(&self, id: Uuid, holder: Uuid, s3_upload_id: &str) -> anyhow::Result<()> {
        let done = sqlx::query("UPDATE uploads SET s3_upload_id = $3, updated_at = now() WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .bind(s3_upload_id)
            .execute(&self.pool)
            .await?;
        fenced(done.rows_affected())
    }

    /// Makes received bytes durable: parts, tail length and hash state in one transaction.
    pub async fn commit(
        &self,
        id: Uuid,
        holder: Uuid,
        p: &Progress,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let added: i64 = p.new_parts.iter().map(|part| part.size as i64).sum();
        let offset: Option<i64> = sqlx::query_scalar(
            "UPDATE uploads SET parts_bytes = parts_bytes + $3, tail_bytes = $4, sha256_state = $5, expires_at = $6, updated_at = now() \
             WHERE id = $1 AND lease_holder = $2 RETURNING upload_offset",
        )
        .bind(id)
        .bind(holder)
        .bind(added)
        .bind(p.tail_bytes as i64)
        .bind(p.sha256.to_bytes())
        .bind(expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        let offset = offset.ok_or(LeaseLost)?;
        for part in &p.new_parts {
            sqlx::query(
                "INSERT INTO upload_parts (upload_id, part_number, size, etag) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (upload_id, part_number) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag",
            )
            .bind(id)
            .bind(part.number)
            .bind(part.size as i64)
            .bind(&part.etag)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(offset as u64)
    }

    pub async fn set_length(&self, id: Uuid, holder: Uuid, length: u64) -> anyhow::Result<()> {
        let done = sqlx::query("UPDATE uploads SET length = $3, updated_at = now() WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .bind(length as i64)
            .execute(&self.pool)
            .await?;
        fenced(done.rows_affected())
    }

    /// The object is whole in S3.
    pub async fn mark_complete(&self, id: Uuid, holder: Uuid, length: u64) -> anyhow::Result<()> {
        let done = sqlx::query(
            "UPDATE uploads SET completed_at = now(), length = $3, parts_bytes = $3, tail_bytes = 0, s3_upload_id = NULL, updated_at = now() \
             WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .bind(length as i64)
        .execute(&self.pool)
        .await?;
        fenced(done.rows_affected())
    }

    pub async fn mark_failed(&self, id: Uuid, holder: Uuid, why: &str) -> anyhow::Result<()> {
        let done = sqlx::query("UPDATE uploads SET failure = $3, completed_at = now(), s3_upload_id = NULL, updated_at = now() WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .bind(why)
            .execute(&self.pool)
            .await?;
        fenced(done.rows_affected())
    }

    pub async fn mark_consumed(&self, partials: &[Uuid], final_id: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE uploads SET consumed_by = $2, updated_at = now() WHERE id = ANY($1)")
            .bind(partials)
            .bind(final_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_video(&self, id: Uuid, video_id: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE uploads SET video_id = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(video_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, id: Uuid, holder: Uuid) -> anyhow::Result<()> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        fenced(done.rows_affected())
    }

    /// Uploads past their expiry that hold bytes no video owns: unfinished
    /// ones, partials never assembled, and refused ones. Oldest first.
    pub async fn expired(&self, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM uploads WHERE expires_at < now() \
             AND (completed_at IS NULL OR concat = 'partial' OR failure IS NOT NULL) ORDER BY expires_at LIMIT $1",
        )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Uploads whose bytes are all in but whose completion did not finish
    /// (the process died between the last commit and the video), and final
    /// uploads whose partials are all complete but were never assembled.
    pub async fn stranded(&self, older_than: Duration, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM uploads u WHERE failure IS NULL AND updated_at < now() - make_interval(secs => $1) AND ( \
                (completed_at IS NULL AND concat <> 'final' AND length IS NOT NULL AND upload_offset = length) \
             OR (completed_at IS NOT NULL AND concat <> 'partial' AND video_id IS NULL) \
             OR (completed_at IS NULL AND concat = 'final' AND NOT EXISTS ( \
                    SELECT 1 FROM upload_concat c JOIN uploads p ON p.id = c.partial_id \
                    WHERE c.final_id = u.id AND p.completed_at IS NULL))) \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One attempt at the lease: taken when it is free or expired.
    pub async fn take_lease(&self, id: Uuid, holder: Uuid, ttl: Duration) -> anyhow::Result<Taken> {
        let (taken, exists): (bool, bool) = sqlx::query_as(
            "WITH taken AS ( \
                UPDATE uploads SET lease_holder = $2, lease_until = now() + make_interval(secs => $3) \
                WHERE id = $1 AND (lease_holder IS NULL OR lease_until < now()) RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM taken), EXISTS (SELECT 1 FROM uploads WHERE id = $1)",
        )
        .bind(id)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_one(&self.pool)
        .await
        .context("taking upload lease")?;
        Ok(match (taken, exists) {
            (true, _) => Taken::Yes,
            (false, true) => Taken::Held,
            (false, false) => Taken::NoSuchUpload,
        })
    }

    /// Extends a lease still held by `holder`; false when it is not.
    pub async fn renew_lease(&self, id: Uuid, holder: Uuid, ttl: Duration) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE uploads SET lease_until = now() + make_interval(secs => $3) WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .bind(ttl.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_lease(&self, id: Uuid, holder: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE uploads SET lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What one attempt at a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Yes,
    Held,
    NoSuchUpload,
}

/// A fenced write found the lease in other hands.
#[derive(Debug, thiserror::Error)]
#[error("the upload's lease passed to another request")]
pub struct LeaseLost;

/// Fenced writes change exactly one row, or the lease is gone.
fn fenced(rows_affected: u64) -> anyhow::Result<()> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(LeaseLost.into())
    }
}
