//! HEAD: where an upload stands — the committed offset (every byte a cut-off
//! PATCH delivered), its length, metadata and concatenation, never cached.
//! The owner's or an admin's to ask.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::auth::Principal;
use uuid::Uuid;

use super::{describe, owned, AppState};
use crate::error::TusError;
use crate::protocol::{names, upload_path};
use crate::store::Kind;

pub async fn head(st: &AppState, me: &Principal, id: Uuid) -> Result<Response, TusError> {
    let up = owned(st, me, id).await?;
    if let Some(why) = &up.failure {
        return Err(TusError::Refused(why.clone()));
    }
    if up.is_expired() {
        return Err(TusError::Expired);
    }
    let mut res = StatusCode::OK.into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A final upload has no meaningful offset until it is assembled.
    if !up.is_final() || up.completed {
        h.insert(names::UPLOAD_OFFSET, HeaderValue::from(up.offset));
    }
    match up.length {
        Some(len) => {
            h.insert(names::UPLOAD_LENGTH, HeaderValue::from(len));
        }
        None if !up.is_final() => {
            h.insert(names::UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1"));
        }
        None => {}
    }
    if !up.metadata.is_empty() {
        h.insert(
            names::UPLOAD_METADATA,
            HeaderValue::from_str(&up.metadata).map_err(anyhow::Error::from)?,
        );
    }
    match &up.kind {
        Kind::Single => {}
        Kind::Partial => {
            h.insert(names::UPLOAD_CONCAT, HeaderValue::from_static("partial"));
        }
        Kind::Final(ids) => {
            let urls: Vec<String> = ids.iter().map(|id| upload_path(*id)).collect();
            h.insert(
                names::UPLOAD_CONCAT,
                HeaderValue::from_str(&format!("final;{}", urls.join(" ")))
                    .map_err(anyhow::Error::from)?,
            );
        }
    }
    describe(&up, h);
    Ok(res)
}
