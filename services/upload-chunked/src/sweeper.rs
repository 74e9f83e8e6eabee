//! The background sweeper every replica runs: it reclaims expired uploads
//! (aborting their S3 multipart uploads and deleting tails and unassembled
//! partials) and resumes completions a crash cut short. It only ever tries
//! a lease once, so it never waits on, or races with, a live request. An
//! upload whose bytes storage would not free stays for the next round.

use std::time::Duration;

use uuid::Uuid;

use crate::error::TusError;
use crate::handlers::AppState;
use crate::store::Kind;

/// How many uploads one round handles of each kind, so a backlog is worked
/// off over several rounds instead of one long one.
const BATCH: i64 = 100;
/// Completions younger than this may still be running in a request.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    pub expired: usize,
    pub resumed: usize,
}

pub async fn run(st: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&st).await {
            Ok(s) if s != Swept::default() => {
                tracing::info!(expired = s.expired, resumed = s.resumed, "sweeper round")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "sweeper round failed; retrying next round"
            ),
        }
    }
}

pub async fn sweep(st: &AppState) -> anyhow::Result<Swept> {
    let mut swept = Swept::default();
    for id in st.store.expired(BATCH).await? {
        match reclaim(st, id).await {
            Ok(true) => {
                swept.expired += 1;
                st.metrics.uploads.with_label_values(&["expired"]).inc();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(upload_id = %id, error = format!("{e:#}"), "could not reclaim expired upload; kept for the next round"),
        }
    }
    for id in st.store.stranded(GRACE, BATCH).await? {
        match resume(st, id).await {
            Ok(true) => swept.resumed += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(upload_id = %id, error = ?e, "could not resume completion"),
        }
    }
    Ok(swept)
}

async fn reclaim(st: &AppState, id: Uuid) -> anyhow::Result<bool> {
    let lease = match st.store.lease(id, Duration::ZERO).await {
        Ok(l) => l,
        Err(TusError::Locked | TusError::NotFound) => return Ok(false),
        Err(e) => return Err(anyhow::anyhow!("{e:?}")),
    };
    let res = st.store.terminate(&lease, id).await;
    lease.release().await;
    if matches!(res, Ok(true)) {
        tracing::info!(upload_id = %id, "expired upload reclaimed");
    }
    res
}

async fn resume(st: &AppState, id: Uuid) -> Result<bool, TusError> {
    let lease = match st.store.lease(id, Duration::ZERO).await {
        Ok(l) => l,
        Err(TusError::Locked | TusError::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let res = match st.store.get(id).await? {
        Some(up) if matches!(up.kind, Kind::Final(_)) => st
            .finisher
            .assemble_leased(&lease, id)
            .await
            .map(|v| v.is_some()),
        Some(up) if up.is_full() || (up.completed && up.video_id.is_none()) => {
            st.finisher.finish(&lease, &up).await.map(|_| true)
        }
        _ => Ok(false),
    };
    lease.release().await;
    if matches!(res, Ok(true)) {
        tracing::info!(upload_id = %id, "completion resumed after an interruption");
    }
    res
}
