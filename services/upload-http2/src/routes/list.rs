//! GET /api/v1/videos: newest first, keyset-paginated with `before`. A
//! creator sees their own videos, an admin every video, an anonymous caller
//! the public ones.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shared::auth::Caller;
use shared::extract::VideoId;
use shared::videos::ListScope;

use super::view::VideoView;
use super::AppState;
use crate::error::ApiError;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    before: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Page {
    items: Vec<VideoView>,
    /// URL of the next page, or null on the last one.
    next: Option<String>,
}

pub async fn list_videos(State(st): State<AppState>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Json<Page>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::InvalidQuery(format!("limit={raw:?} must be a whole number from 1 to {MAX_LIMIT}")))?,
    };
    let before = match q.before.as_deref() {
        None => None,
        Some(raw) => Some(VideoId::parse(raw).map_err(|p| ApiError::InvalidQuery(format!("before: {}", p.detail)))?.0),
    };
    // One extra row tells whether another page exists without a COUNT.
    let scope = match caller.principal() {
        Some(p) if p.is_admin() => ListScope::All,
        Some(p) => ListScope::Owner(p.id),
        None => ListScope::Public,
    };
    let mut rows = st.videos.list(scope, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| format!("/api/v1/videos?limit={limit}&before={}", rows.last().expect("non-empty").id));
    let items = rows.into_iter().map(|v| VideoView::new(v, vec![], None)).collect();
    Ok(Json(Page { items, next }))
}
