//! Operator endpoints on the worker's internal port (beside /metrics; the
//! front doors do not route here):
//!
//! - `GET /admin/dead-jobs?limit=N`: the dead-letter queue, oldest first.
//! - `POST /admin/dead-jobs/{job_id}/requeue`: puts one back as a new job
//!   with fresh attempts.
//!
//! Both need an admin API key (`Authorization: Bearer …`): 401 without a
//! key, 403 with a creator's. Health and metrics, beside them, stay open.
//!
//! A requeue first returns the video to `uploaded` (the state the upload
//! services' republisher watches), then publishes, then removes the dead
//! message, so a crash between steps never loses the job.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shared::auth::{Authenticator, Caller};
use shared::error::Problem;
use shared::queue::{DeadLetters, Decision, Publisher, Requeued};
use shared::transcodes::{Revival, Transcodes};
use shared::videos::Videos;
use uuid::Uuid;

#[derive(Clone)]
pub struct AdminState {
    pub dead: Arc<DeadLetters>,
    pub publisher: Arc<Publisher>,
    pub transcodes: Transcodes,
    pub videos: Videos,
}

/// A listing reads at most this many messages.
const MAX_LIST: usize = 1000;
/// A requeue looks this deep for its job.
const MAX_SCAN: usize = 10_000;

/// The admin routes behind the key layer (applied to these routes only).
pub fn router(state: AdminState, auth: Authenticator) -> Router {
    Router::new()
        .route("/admin/dead-jobs", get(list))
        .route("/admin/dead-jobs/{job_id}/requeue", post(requeue))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(auth, shared::auth::authenticate))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
}

fn bad_request(detail: String) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter", detail).into_response()
}

async fn list(caller: Caller, State(st): State<AdminState>, Query(q): Query<ListQuery>) -> Response {
    if let Err(denied) = caller.require_admin() {
        return denied.into_response();
    }
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
        _ => return bad_request(format!("limit must be a whole number from 1 to {MAX_LIST}")),
    };
    match st.dead.list(limit).await {
        Ok((jobs, total)) => Json(serde_json::json!({ "total": total, "jobs": jobs })).into_response(),
        Err(e) => Problem::unavailable("the message broker", &e).into_response(),
    }
}

async fn requeue(caller: Caller, State(st): State<AdminState>, Path(raw): Path<String>) -> Response {
    if let Err(denied) = caller.require_admin() {
        return denied.into_response();
    }
    let Ok(job_id) = Uuid::try_parse(&raw) else {
        return Problem::new(StatusCode::NOT_FOUND, "dead-job-not-found", "Dead job not found", format!("{raw:?} is not a job id (a UUID)")).into_response();
    };
    let transcodes = st.transcodes.clone();
    let outcome = st
        .dead
        .requeue(job_id, MAX_SCAN, &st.publisher, |job| async move {
            Ok(match transcodes.revive(job.video_id).await? {
                Revival::Revived => Decision::Requeue,
                Revival::Gone => Decision::Discard,
                Revival::NotFailed(_) => Decision::Keep,
            })
        })
        .await;
    match outcome {
        Ok(Requeued::Requeued(job)) => {
            if let Err(e) = st.videos.mark_queued(job.video_id).await {
                tracing::warn!(error = format!("{e:#}"), "requeued job published but row not marked queued");
            }
            tracing::info!(%job_id, video_id = %job.video_id, "dead job requeued");
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "job_id": job.job_id, "requeued_from": job_id, "video_id": job.video_id, "status": "queued" })))
                .into_response()
        }
        Ok(Requeued::Discarded(job)) => Problem::new(
            StatusCode::GONE,
            "video-deleted",
            "Video deleted",
            format!("Video {} no longer exists, so its dead job was discarded instead of requeued.", job.video_id),
        )
        .into_response(),
        Ok(Requeued::Kept(job)) => {
            let status = st.transcodes.status(job.video_id).await.ok().flatten().unwrap_or_else(|| "gone".into());
            Problem::new(
                StatusCode::CONFLICT,
                "video-not-failed",
                "Video is not failed",
                format!("Video {} is {status} (not failed, nor stuck without a running attempt), so its dead job was left in the queue.", job.video_id),
            )
            .into_response()
        }
        Ok(Requeued::NotFound) => Problem::new(
            StatusCode::NOT_FOUND,
            "dead-job-not-found",
            "Dead job not found",
            format!("No job {job_id} among the first {MAX_SCAN} dead jobs; list them with GET /admin/dead-jobs."),
        )
        .into_response(),
        Err(e) => Problem::unavailable("the message broker or catalogue", &e).into_response(),
    }
}
