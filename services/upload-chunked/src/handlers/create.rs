//! POST (creation): a new upload, with its length now or later
//! (creation-defer-length), optionally its first bytes in the same request
//! (creation-with-upload), or a final upload assembled from partial ones
//! (concatenation, also before the partials finish:
//! concatenation-unfinished).
//!
//! Every header and the metadata are checked before the row is written, so
//! a refused creation leaves nothing behind. The caller's key was required
//! before any of it (see `dispatch`): its principal owns the upload, and the
//! video it becomes, whose visibility the metadata key `visibility` sets
//! (`public` when absent). A final upload may name only the caller's own
//! partial uploads.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::auth::Principal;
use shared::videos::Visibility;
use uuid::Uuid;

use super::{describe, patch::{admit, write_at}, AppState};
use crate::error::TusError;
use crate::finish::VideoFields;
use crate::protocol::{self, names, upload_path, Concat, Metadata};
use crate::store::{Kind, NewUpload, Upload};

/// The metadata key a client names the video's visibility with.
pub const VISIBILITY_KEY: &str = "visibility";

pub async fn create(st: &AppState, me: &Principal, headers: &HeaderMap, body: Body) -> Result<Response, TusError> {
    let concat = Concat::from_headers(headers)?;
    let metadata = Metadata::from_headers(headers)?;
    VideoFields::from_metadata(&metadata)?;
    let visibility = visibility(&metadata)?;
    let max = st.tus.max_size.0;
    let length = match (
        &concat,
        protocol::upload_length(headers)?,
        protocol::defer_length(headers)?,
    ) {
        (Concat::Final(_), Some(_), _) => return Err(TusError::FinalWithLength),
        (Concat::Final(_), None, _) => None,
        (_, Some(_), true) => return Err(TusError::LengthAndDefer),
        (_, Some(0), _) => return Err(TusError::EmptyUpload),
        (_, Some(l), _) if l > max => return Err(TusError::TooLarge { max }),
        (_, Some(l), _) => Some(l),
        (_, None, true) => None,
        (_, None, false) => return Err(TusError::LengthRequired),
    };
    let data = protocol::is_offset_octet_stream(headers);
    let body_len = protocol::content_length(headers);
    let sends_bytes = data && body_len != Some(0);
    if !data && body_len.is_some_and(|n| n > 0) {
        return Err(TusError::WrongContentType);
    }
    if let (Some(n), Some(l)) = (body_len, length) {
        if data && n > l {
            return Err(TusError::ExceedsLength { remaining: l });
        }
    }
    // Admitted before the row exists, so a busy server creates nothing the
    // client would have to clean up.
    let admission = sends_bytes.then(|| admit(st, headers)).transpose()?;
    let kind = match concat {
        Concat::None => Kind::Single,
        Concat::Partial => Kind::Partial,
        Concat::Final(ids) => {
            if sends_bytes {
                return Err(TusError::FinalNotWritable);
            }
            check_partials(st, me, &ids).await?;
            Kind::Final(ids)
        }
    };

    let id = Uuid::now_v7();
    let up = st
        .store
        .create(NewUpload {
            id,
            kind,
            length,
            metadata: metadata.raw,
            owner_id: me.id,
            visibility,
        })
        .await?;
    st.metrics.uploads.with_label_values(&["created"]).inc();
    let up = if let Some(admission) = admission {
        write_at(st, admission, me, id, 0, headers, body).await?.0
    } else if up.is_final() {
        assemble_if_ready(st, up).await?
    } else {
        up
    };

    let mut res = StatusCode::CREATED.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&upload_path(id)).expect("ascii path"),
    );
    if sends_bytes {
        h.insert(names::UPLOAD_OFFSET, HeaderValue::from(up.offset));
    }
    describe(&up, h);
    Ok(res)
}

/// `visibility` in the metadata: absent is public; anything but one of the
/// three names (not UTF-8, no value, another word) is refused.
fn visibility(m: &Metadata) -> Result<Visibility, TusError> {
    let Some((_, value)) = m.pairs.iter().find(|(k, _)| k == VISIBILITY_KEY) else {
        return Ok(Visibility::default());
    };
    let text = value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
    text.trim().parse().map_err(TusError::BadVisibility)
}

/// Each partial must exist, belong to the caller, be a partial upload, and
/// still hold its bytes. Another principal's partial is answered exactly
/// like a missing one — even for an admin, since the final's owner becomes
/// the video's owner and one video must not be assembled from two owners' bytes.
async fn check_partials(st: &AppState, me: &Principal, ids: &[Uuid]) -> Result<(), TusError> {
    let mut total = Some(0u64);
    for id in ids {
        let p = st
            .store
            .get(*id)
            .await?
            .filter(|p| p.owner_id == Some(me.id))
            .ok_or_else(|| TusError::BadConcat(format!("partial upload {id} does not exist")))?;
        if p.kind != Kind::Partial {
            return Err(TusError::BadConcat(format!(
                "upload {id} was not created with Upload-Concat: partial"
            )));
        }
        if p.consumed || p.failure.is_some() || p.is_expired() {
            return Err(TusError::BadConcat(format!(
                "partial upload {id} is no longer available"
            )));
        }
        total = total.zip(p.length).map(|(t, l)| t + l);
    }
    if total.is_some_and(|t| t > st.tus.max_size.0) {
        return Err(TusError::TooLarge {
            max: st.tus.max_size.0,
        });
    }
    Ok(())
}

async fn assemble_if_ready(st: &AppState, up: Upload) -> Result<Upload, TusError> {
    if st.finisher.assemble(up.id, st.tus.lock_wait.0).await?.is_some() {
        st.metrics.uploads.with_label_values(&["completed"]).inc();
    }
    Ok(st.store.get(up.id).await?.unwrap_or(up))
}
