//! The key API, one handler per operation, mounted by upload-http2:
//!
//! - `POST /api/v1/keys` `{"label": …, "role": "creator"}`: an admin creates
//!   a new principal with its first key; a creator adds a key to itself.
//!   The key is in this answer and nowhere else, ever.
//! - `GET /api/v1/keys`: the caller's keys (an admin's: everyone's).
//! - `DELETE /api/v1/keys/{key_id}`: revokes; on this replica at once, on
//!   the others within `AUTH_CACHE_TTL`.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{hidden, Authenticator, Caller, Role};
use crate::error::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    label: String,
    role: Option<Role>,
}

const MAX_LABEL: usize = 200;
const BODY_LIMIT: usize = 16 << 10;

pub fn router(auth: Authenticator) -> Router {
    // A key request is a few hundred bytes: the body is bounded well below
    // axum's 2 MB default, which an anonymous caller could otherwise make us buffer.
    Router::new()
        .route("/api/v1/keys", get(list).post(create).layer(DefaultBodyLimit::max(BODY_LIMIT)))
        .route("/api/v1/keys/{key_id}", delete(revoke))
        .with_state(auth)
}

fn invalid(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "invalid-key-request", "Invalid key request", detail).into_response()
}

async fn create(State(auth): State<Authenticator>, caller: Caller, body: Bytes) -> Response {
    let me = match caller.require() {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let req: NewKey = if body.is_empty() {
        NewKey { label: String::new(), role: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return invalid(format!("expected {{\"label\": \"…\", \"role\": \"creator\" | \"admin\"}}: {e}")),
        }
    };
    if req.label.len() > MAX_LABEL || req.label.chars().any(char::is_control) {
        return invalid(format!("a label is at most {MAX_LABEL} bytes of printable text"));
    }
    // An admin mints principals; a creator only adds keys to itself.
    let (owner, role) = match (me.is_admin(), req.role) {
        (true, role) => (None, role.unwrap_or(Role::Creator)),
        (false, None | Some(Role::Creator)) => (Some(me.id), Role::Creator),
        (false, Some(Role::Admin)) => {
            return Problem::new(StatusCode::FORBIDDEN, "admin-required", "Admin key required", "Only an admin can create admin keys.").into_response()
        }
    };
    match auth.keys().create(owner, role, &req.label).await {
        Ok((key, info)) => {
            tracing::info!(key_id = %info.id, principal = %info.principal_id, role = %role, by = %me.id, "API key created");
            let mut body = serde_json::to_value(&info).unwrap_or_default();
            body["key"] = json!(key.expose());
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => Problem::unavailable("the key store (PostgreSQL)", &e).into_response(),
    }
}

async fn list(State(auth): State<Authenticator>, caller: Caller) -> Response {
    let me = match caller.require() {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match auth.keys().list((!me.is_admin()).then_some(me.id)).await {
        Ok(keys) => Json(json!({ "keys": keys })).into_response(),
        Err(e) => Problem::unavailable("the key store (PostgreSQL)", &e).into_response(),
    }
}

async fn revoke(State(auth): State<Authenticator>, caller: Caller, Path(raw): Path<String>) -> Response {
    let me = match caller.require() {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let Ok(key_id) = Uuid::try_parse(&raw) else {
        return Problem::new(StatusCode::BAD_REQUEST, "invalid-key-id", "Invalid key id", format!("{raw:?} is not a key id (a UUID from GET /api/v1/keys)")).into_response();
    };
    match auth.keys().revoke(key_id, (!me.is_admin()).then_some(me.id)).await {
        Ok(Some(hash)) => {
            auth.forget(&hash).await;
            tracing::info!(%key_id, by = %me.id, "API key revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => hidden("key", "key-not-found").into_response(),
        Err(e) => Problem::unavailable("the key store (PostgreSQL)", &e).into_response(),
    }
}
