//! DELETE (termination): frees the upload's S3 parts, tail and object, then
//! forgets it; later requests get 404. If storage cannot free the bytes the
//! upload is kept and the answer is 503 with Retry-After, so no byte is
//! orphaned. A video the upload already became is not deleted — videos
//! have their own lifecycle.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use crate::error::TusError;

pub async fn delete(st: &AppState, id: Uuid) -> Result<Response, TusError> {
    let lease = st.store.lease(id, st.tus.lock_wait.0).await?;
    let res = st.store.terminate(&lease, id).await;
    lease.release().await;
    if !res.map_err(TusError::NotTerminated)? {
        return Err(TusError::NotFound);
    }
    st.metrics.uploads.with_label_values(&["terminated"]).inc();
    Ok(StatusCode::NO_CONTENT.into_response())
}
