//! DELETE (termination): frees the upload's S3 parts, tail and object, then
//! forgets it; later requests get 404. If storage cannot free the bytes the
//! upload is kept and the answer is 503 with Retry-After, so no byte is
//! orphaned. A video the upload already became is not deleted — videos
//! have their own lifecycle. The owner's or an admin's to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::auth::Principal;
use uuid::Uuid;

use super::{owned, AppState};
use crate::error::TusError;

pub async fn delete(st: &AppState, me: &Principal, id: Uuid) -> Result<Response, TusError> {
    // Checked before the lease: someone else's upload is not even waited for.
    owned(st, me, id).await?;
    let lease = st.store.lease(id, st.tus.lock_wait.0).await?;
    let res = st.store.terminate(&lease, id).await;
    lease.release().await;
    if !res.map_err(TusError::NotTerminated)? {
        return Err(TusError::NotFound);
    }
    st.metrics.uploads.with_label_values(&["terminated"]).inc();
    Ok(StatusCode::NO_CONTENT.into_response())
}
