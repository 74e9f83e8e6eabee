//! DELETE (termination): frees the upload's S3 parts, tail and object and
//! forgets it; later requests get 404. A video the upload already became
//! is not deleted — videos have their own lifecycle.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use crate::error::TusError;

pub async fn delete(st: &AppState, id: Uuid) -> Result<Response, TusError> {
    let lock = st.store.lock(id, st.tus.lock_wait.0).await?;
    let res = st.store.terminate(&lock, id).await;
    lock.release().await;
    if !res? {
        return Err(TusError::NotFound);
    }
    st.metrics.uploads.with_label_values(&["terminated"]).inc();
    Ok(StatusCode::NO_CONTENT.into_response())
}
