//! POST /api/v1/videos: the upload itself.

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use shared::auth::Caller;
use shared::layout;
use shared::videos::{register_and_enqueue, NewVideo};
use uuid::Uuid;

use super::view::VideoView;
use super::AppState;
use crate::error::ApiError;
use crate::intake::{classify, clean_title, parse_visibility, Intake};

#[derive(Debug, Deserialize)]
pub struct CreateQuery {
    title: Option<String>,
    description: Option<String>,
    visibility: Option<String>,
}

/// Header alternative to `?title=` for clients that cannot build query strings.
const TITLE_HEADER: &str = "x-video-title";

pub async fn create_video(State(st): State<AppState>, caller: Caller, Query(q): Query<CreateQuery>, headers: HeaderMap, req: Request) -> Response {
    match create(st.clone(), caller, q, headers, req).await {
        Ok(res) => {
            st.metrics.uploads.with_label_values(&["created"]).inc();
            res
        }
        Err(e) => {
            st.metrics.uploads.with_label_values(&[&e.to_problem().code]).inc();
            e.into_response()
        }
    }
}

async fn create(st: AppState, caller: Caller, q: CreateQuery, headers: HeaderMap, req: Request) -> Result<Response, ApiError> {
    // Who, before anything is read or stored.
    let owner = caller.require()?.id;
    let query_visibility = parse_visibility(q.visibility.as_deref())?;
    let kind = classify(&headers)?;
    // Refuse before reading a byte when the client announces the size.
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if len == 0 {
            return Err(ApiError::EmptyBody);
        }
        if len > st.upload.max_bytes.0 {
            return Err(ApiError::TooLarge { max: st.upload.max_bytes.0 });
        }
    }
    let header_title = headers.get(TITLE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let query_title = clean_title(q.title.or(header_title))?;
    // Held until the response: the body's buffer is what the byte budget counts.
    let bound = st.upload.buffer_bytes();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let _admission = st.budget.admit(declared.map_or(bound, |n| n.min(bound))).map_err(ApiError::Busy)?;

    let id = Uuid::now_v7();
    let intake = Intake { storage: &st.storage, settings: &st.upload, key: layout::source(id) };
    let received = intake.receive(kind, req.into_body()).await?;
    // From here the object exists; if this future is dropped (client gone)
    // before the row commits, the guard deletes it so nothing is orphaned.
    let guard = OrphanGuard { storage: st.storage.clone(), key: Some(received.stored.key.clone()) };

    let title = received.title.or(query_title).unwrap_or_else(|| "Untitled".to_owned());
    let description = received.description.or(q.description).unwrap_or_default();
    let size = received.stored.size;
    let visibility = received.visibility.or(query_visibility).unwrap_or_default();
    let new = NewVideo { id, owner_id: Some(owner), visibility, title, description, content_type: received.content_type, stored: received.stored };
    let registered = register_and_enqueue(&st.videos, &st.publisher, new).await?;
    guard.disarm();
    st.metrics.bytes.inc_by(size);
    tracing::info!(video_id = %id, size, enqueued = registered.enqueued, trace_id = shared::telemetry::current_trace_id(), "video uploaded");

    let location = format!("/api/v1/videos/{id}");
    let mut res = (StatusCode::CREATED, Json(VideoView::new(registered.video, vec![], None))).into_response();
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii path"));
    Ok(res)
}

struct OrphanGuard {
    storage: shared::storage::Storage,
    key: Option<String>,
}

impl OrphanGuard {
    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let storage = self.storage.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = storage.delete(&key).await {
                    tracing::error!(key, error = format!("{e:#}"), "could not delete source of an unregistered upload");
                }
            });
        }
    }
}
