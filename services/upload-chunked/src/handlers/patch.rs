//! PATCH: appends a body at the upload's offset — and [`write_at`], the
//! write path creation-with-upload shares.
//!
//! Cheap refusals come first, then admission to the service's upload
//! budget, then the upload's lease, then the same checks again on the state
//! read under the lease (another replica may have written in between). The
//! write and the completion run in a task of their own: if the client
//! disconnects, the handler future is dropped, but the task still commits
//! what arrived and gives back the lease and the budget.
//!
//! The body is read under the pace rules (minimum rate, deadline, idle
//! limit). A body cut off for being too slow or too long keeps the bytes
//! it delivered, like a disconnect, and is answered 408 with the offset.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::auth::Principal;
use shared::budget::Admission;
use shared::pace::{Breach, Pace};
use uuid::Uuid;

use super::{check_writable, describe, owned, AppState};
use crate::error::TusError;
use crate::progress::UploadProgress;
use crate::protocol::{self, names, ChecksumPlan};
use crate::store::{Appended, Chunk, Lease, Upload};

pub async fn patch(
    st: &AppState,
    me: &Principal,
    id: Uuid,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, TusError> {
    if !protocol::is_offset_octet_stream(headers) {
        return Err(TusError::WrongContentType);
    }
    let offset = protocol::upload_offset(headers)?;
    // Empty: Content-Length 0, or (HTTP/2 may send none) a body already at
    // its end. Not with Upload-Length: declaring a length is a change, refused as before.
    let empty = protocol::content_length(headers) == Some(0) || axum::body::HttpBody::is_end_stream(&body);
    let empty = empty && !headers.contains_key(names::UPLOAD_LENGTH);
    let admission = admit(st, headers)?;
    let (up, _) = match write_at(st, admission, me, id, offset, headers, body).await {
        // Rare, so only then is the row read again.
        Err(TusError::AlreadyComplete) => return settled_retry(st, me, id, offset, empty).await,
        done => done?,
    };
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(names::UPLOAD_OFFSET, HeaderValue::from(up.offset));
    describe(&up, res.headers_mut());
    Ok(res)
}

/// PATCHes to an upload that is already complete, as retrying clients send
/// them after a cut connection (tusd answers them the same way):
/// - at another offset: 409, as tus requires for any offset mismatch, so the
///   client asks HEAD and finds the upload done. A PATCH cut midway has its
///   bytes committed after the cut, so a HEAD racing that commit can report
///   the old offset; tus-js-client then PATCHed there and, answered 403,
///   gave up on an upload that was stored whole (scripts/faults-net,
///   connections cut every 2 s). It retries a 409.
/// - empty, at the end: 204 with the offset and the video's link, what the
///   lost answer to its last PATCH said. tuspy retries so (HEAD, then a
///   PATCH of what is left: nothing) and failed the same way on a 403.
/// Called when the write found the upload complete; a non-empty PATCH at
/// the end is still 403.
async fn settled_retry(st: &AppState, me: &Principal, id: Uuid, offset: u64, empty: bool) -> Result<Response, TusError> {
    let up = owned(st, me, id).await?;
    if offset != up.offset {
        return Err(TusError::OffsetMismatch { expected: up.offset, got: offset });
    }
    if !empty {
        return Err(TusError::AlreadyComplete);
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(names::UPLOAD_OFFSET, HeaderValue::from(up.offset));
    describe(&up, res.headers_mut());
    Ok(res)
}

/// The request's write, as parsed from its headers before the lease is taken.
struct WriteRequest {
    client_offset: u64,
    new_length: Option<u64>,
    content_length: Option<u64>,
    checksum: ChecksumPlan,
}

/// A share of the service's upload budget for one request with a body:
/// one upload slot, and the bytes it may buffer before they are in S3.
pub fn admit(st: &AppState, headers: &HeaderMap) -> Result<Admission, TusError> {
    let bound = st.tus.buffer_bytes();
    let bytes = protocol::content_length(headers).map_or(bound, |n| n.min(bound));
    st.budget.admit(bytes).map_err(TusError::Busy)
}

/// Writes `body` at `client_offset` and finishes the upload if that
/// completed it. Returns the upload as it now stands. `admission` is held
/// until the write ends, even if the client goes away first. Only the
/// owner (`me`) or an admin may write.
pub async fn write_at(
    st: &AppState,
    admission: Admission,
    me: &Principal,
    id: Uuid,
    client_offset: u64,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Upload, Appended), TusError> {
    let req = WriteRequest {
        client_offset,
        new_length: protocol::upload_length(headers)?,
        content_length: protocol::content_length(headers),
        checksum: ChecksumPlan::from_headers(headers)?,
    };
    let up = owned(st, me, id).await?;
    check_writable(&up)?;
    let pace = Pace::start(&st.tus.pace, Some(st.tus.idle_timeout.0));
    let lease = st.store.lease(id, st.tus.lock_wait.0).await?;
    let st = st.clone();
    tokio::spawn(async move {
        let res = write_leased(&st, &lease, id, req, body, pace).await;
        lease.release().await;
        drop(admission);
        res
    })
    .await
    .map_err(|e| TusError::Internal(anyhow::anyhow!("write task ended abnormally: {e}")))?
}

async fn write_leased(
    st: &AppState,
    lease: &Lease,
    id: Uuid,
    req: WriteRequest,
    body: Body,
    pace: Pace,
) -> Result<(Upload, Appended), TusError> {
    let mut up = st.store.get(id).await?.ok_or(TusError::NotFound)?;
    check_writable(&up)?;
    if req.client_offset != up.offset {
        return Err(TusError::OffsetMismatch {
            expected: up.offset,
            got: req.client_offset,
        });
    }
    if let Some(len) = req.new_length {
        match up.length {
            Some(known) if known == len => {}
            Some(_) => return Err(TusError::LengthAlreadySet),
            None if len < up.offset => {
                return Err(TusError::LengthBelowOffset { offset: up.offset })
            }
            None if len == 0 => return Err(TusError::EmptyUpload),
            None if len > st.tus.max_size.0 => {
                return Err(TusError::TooLarge {
                    max: st.tus.max_size.0,
                })
            }
            None => {
                st.store.declare_length(lease, &up, len).await?;
                up.length = Some(len);
            }
        }
    }
    let remaining = up
        .length
        .unwrap_or(st.tus.max_size.0)
        .saturating_sub(up.offset);
    if req.content_length.is_some_and(|n| n > remaining) {
        if up.length.is_none() {
            return Err(TusError::TooLarge {
                max: st.tus.max_size.0,
            });
        }
        return Err(TusError::ExceedsLength { remaining });
    }
    let appended = if req.content_length == Some(0) {
        Appended {
            offset: up.offset,
            interrupted: false,
            expires_at: None,
            breach: None,
        }
    } else {
        let chunk = Chunk {
            body,
            content_length: req.content_length,
            checksum: req.checksum,
            on_progress: st.board.reporter(id, up.length),
            pace,
        };
        st.store.append(lease, &up, chunk).await?
    };
    st.metrics.bytes.inc_by(appended.offset - up.offset);
    // What the append changed is known; no need to read the row back.
    up.offset = appended.offset;
    up.expires_at = appended.expires_at.unwrap_or(up.expires_at);
    if appended.interrupted {
        tracing::info!(upload_id = %id, offset = up.offset, "request cut off; received bytes kept");
    }
    if !up.is_full() {
        st.board.publish(id, &UploadProgress::from(&up)).await;
        // A silent client is most likely gone: its answer is the offset, as
        // for a disconnect. One that was too slow or too long is told why.
        return match appended.breach {
            Some(breach @ (Breach::TooSlow { .. } | Breach::Deadline { .. })) => {
                st.metrics.uploads.with_label_values(&["cut_off"]).inc();
                Err(TusError::CutOff { breach, offset: up.offset })
            }
            _ => Ok((up, appended)),
        };
    }
    let video_id = st.finisher.finish(lease, &up).await.inspect_err(|e| {
        if matches!(e, TusError::FileChecksumMismatch) {
            st.metrics.uploads.with_label_values(&["refused"]).inc();
        }
    })?;
    st.metrics.uploads.with_label_values(&["completed"]).inc();
    up.completed = true;
    up.video_id = video_id;
    Ok((up, appended))
}
