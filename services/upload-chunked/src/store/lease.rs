//! The per-upload writer lease: one request at a time changes an upload,
//! on any replica, without holding a database connection while it does.
//!
//! A lease is a holder id and an expiry on the upload's row, taken by one
//! conditional UPDATE (the lease is free, or expired) and given back by
//! another. While the request runs, a small task renews it every third of
//! its time to live; each renewal borrows a pooled connection for one
//! statement. If the process dies the renewals stop and the lease expires,
//! so a crashed writer blocks its upload for at most one TTL.
//!
//! The lease also fences: writes of committed state are conditional on
//! still holding it (see `Rows`), so a writer that lost its lease — paused
//! past the TTL, or cut off from the database — cannot overwrite the work
//! of the request that took over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::rows::{Rows, Taken};
use crate::error::TusError;

/// How often a waiting request asks again; a lease is usually released by
/// a request finishing, so this is the latency a waiter adds to that.
const POLL: Duration = Duration::from_millis(100);

/// Held while a request changes an upload; `release` gives it back at once,
/// dropping it gives it back in the background.
pub struct Lease {
    id: Uuid,
    fence: Fence,
    rows: Rows,
    renewer: Option<JoinHandle<()>>,
}

/// What a writer needs of its lease: the token its writes are conditional
/// on, and whether renewing has failed (then it stops sending bytes to S3).
#[derive(Clone, Debug)]
pub struct Fence {
    holder: Uuid,
    lost: Arc<AtomicBool>,
}

impl Fence {
    pub fn holder(&self) -> Uuid {
        self.holder
    }

    /// The lease expired under us and another request may have it.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Lease {
    /// Takes the upload's lease, waiting at most `wait` for its holder.
    /// `TusError::NotFound` when there is no such upload.
    pub async fn acquire(rows: &Rows, id: Uuid, ttl: Duration, wait: Duration) -> Result<Self, TusError> {
        let holder = Uuid::new_v4();
        let give_up = Instant::now() + wait;
        loop {
            match rows.take_lease(id, holder, ttl).await? {
                Taken::Yes => return Ok(Self::keep(rows.clone(), id, holder, ttl)),
                Taken::NoSuchUpload => return Err(TusError::NotFound),
                Taken::Held if Instant::now() >= give_up => return Err(TusError::Locked),
                Taken::Held => tokio::time::sleep(POLL.min(give_up - Instant::now())).await,
            }
        }
    }

    fn keep(rows: Rows, id: Uuid, holder: Uuid, ttl: Duration) -> Self {
        let fence = Fence { holder, lost: Arc::new(AtomicBool::new(false)) };
        let renewer = tokio::spawn(renew(rows.clone(), id, holder, ttl, fence.lost.clone()));
        Self { id, fence, rows, renewer: Some(renewer) }
    }

    /// The fencing token the store's writes are conditional on.
    pub fn holder(&self) -> Uuid {
        self.fence.holder
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Err(e) = self.rows.release_lease(self.id, self.fence.holder).await {
            tracing::warn!(upload_id = %self.id, error = format!("{e:#}"), "could not release upload lease; it will expire");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else { return };
        renewer.abort();
        let (rows, id, holder) = (self.rows.clone(), self.id, self.fence.holder);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = rows.release_lease(id, holder).await {
                    tracing::warn!(upload_id = %id, error = format!("{e:#}"), "could not release upload lease; it will expire");
                }
            });
        }
    }
}

/// Renews every third of the TTL, so two renewals in a row can fail (a
/// database blip) before the lease lapses.
async fn renew(rows: Rows, id: Uuid, holder: Uuid, ttl: Duration, lost: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match rows.renew_lease(id, holder, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(upload_id = %id, "upload lease lost; this request's writes will be refused");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!(upload_id = %id, error = format!("{e:#}"), "could not renew upload lease; retrying"),
        }
    }
}
