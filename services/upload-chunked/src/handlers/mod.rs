//! The tus protocol handlers: one file per operation, and here the routing
//! that turns a request into an [`Operation`] (honouring
//! `X-HTTP-Method-Override`, for clients behind proxies that only pass GET
//! and POST) and the headers every answer carries.
//!
//! - [`options`] — server capabilities.
//! - [`create`] — POST: creation, creation-with-upload, defer-length, concatenation.
//! - [`head`] — HEAD: where an upload stands.
//! - [`patch`] — PATCH: appending bytes, and the write path creation shares.
//! - [`delete`] — DELETE: termination.
//! - [`events`] — GET …/events: progress as server-sent events (not tus).
//!
//! Every operation but OPTIONS needs an API key (the shared auth layer
//! resolves it; see `startup`): creation records its principal as the
//! upload's owner, and every later operation is for the owner or an admin
//! only — anyone else gets the 404 of a missing upload ([`owned`]).

pub mod create;
pub mod delete;
pub mod events;
pub mod head;
pub mod options;
pub mod patch;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use prometheus::{IntCounter, IntCounterVec, Opts};
use shared::auth::{authenticate, Authenticator, Caller, Principal};
use shared::budget::Budget;
use shared::metrics::Metrics;
use shared::ratelimit::RateLimit;
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use uuid::Uuid;

use crate::configuration::TusSettings;
use crate::error::TusError;
use crate::finish::{video_path, Finisher};
use crate::progress::ProgressBoard;
use crate::protocol::{self, names, BASE_PATH, TUS_VERSION};
use crate::store::{DataStore, Upload};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn DataStore>,
    pub finisher: Finisher,
    pub board: ProgressBoard,
    pub tus: TusSettings,
    pub metrics: TusMetrics,
    /// Concurrent uploads and body bytes in flight, for the whole instance.
    pub budget: Budget,
    /// One watcher per upload for the event streams, shared by their subscribers.
    pub events: events::UploadWatch,
}

#[derive(Clone)]
pub struct TusMetrics {
    /// created, completed, terminated, expired, refused, cut_off (too slow or too long), error.
    pub uploads: IntCounterVec,
    pub bytes: IntCounter,
}

impl TusMetrics {
    pub fn new(m: &Metrics) -> Self {
        Self {
            uploads: m.register(
                IntCounterVec::new(
                    Opts::new("tus_uploads_total", "tus uploads by lifecycle event"),
                    &["event"],
                )
                .expect("valid metric"),
            ),
            bytes: m.register(
                IntCounter::new("tus_bytes_received_total", "bytes committed to tus uploads")
                    .expect("valid metric"),
            ),
        }
    }
}

/// The tus operations, named as the protocol names them.
enum Operation {
    Options,
    Create,
    Head(Uuid),
    Patch(Uuid),
    Delete(Uuid),
}

/// `uploads_limit` guards creation: OPTIONS never reaches it (answered by
/// the CORS and discovery layers outside), so on the collection it is POST.
///
/// The key layer sits inside CORS and discovery: a browser's preflight
/// carries no Authorization and is answered before it, and so is tus's own
/// OPTIONS; a 401 still carries the CORS headers a browser needs to read it.
pub fn router(state: AppState, cors: CorsLayer, uploads_limit: RateLimit, auth: Authenticator) -> Router {
    Router::new()
        .route(BASE_PATH, any(collection).layer(uploads_limit.clone()))
        .route(&format!("{BASE_PATH}/"), any(collection).layer(uploads_limit))
        .route(&format!("{BASE_PATH}/{{id}}"), any(resource))
        .route(&format!("{BASE_PATH}/{{id}}/events"), get(events::events))
        .layer(from_fn_with_state(auth, authenticate))
        .layer(cors)
        .layer(from_fn_with_state(state.clone(), discovery))
        .layer(SetResponseHeaderLayer::overriding(
            names::TUS_RESUMABLE,
            HeaderValue::from_static(TUS_VERSION),
        ))
        .with_state(state)
}

/// tower-http's CORS layer answers every OPTIONS as a preflight, which
/// would hide tus's own OPTIONS (Tus-Version, Tus-Extension…). This runs
/// outside it and answers the OPTIONS that are not preflights — those
/// without Access-Control-Request-Method — itself.
async fn discovery(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let preflight = req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if req.method() == Method::OPTIONS && !preflight {
        return options::options(&st);
    }
    next.run(req).await
}

fn effective_method(req: &Request) -> Result<Method, TusError> {
    let over = req
        .headers()
        .get(names::METHOD_OVERRIDE)
        .and_then(|v| v.to_str().ok());
    match over {
        Some(m) if req.method() == Method::POST => {
            Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
                TusError::BadHeader(
                    "x-http-method-override".into(),
                    format!("{m:?} is not a method"),
                )
            })
        }
        _ => Ok(req.method().clone()),
    }
}

async fn collection(State(st): State<AppState>, caller: Caller, req: Request) -> Response {
    let op = match effective_method(&req) {
        Ok(Method::OPTIONS) => Ok(Operation::Options),
        Ok(Method::POST) => Ok(Operation::Create),
        Ok(m) => Err(TusError::MethodNotAllowed(m.to_string())),
        Err(e) => Err(e),
    };
    run(st, caller, op, req).await
}

async fn resource(State(st): State<AppState>, caller: Caller, Path(id): Path<String>, req: Request) -> Response {
    // An id that cannot exist is simply an unknown upload.
    let op = match (effective_method(&req), Uuid::try_parse(&id)) {
        (Ok(Method::OPTIONS), _) => Ok(Operation::Options),
        (Err(e), _) => Err(e),
        (Ok(_), Err(_)) => Err(TusError::NotFound),
        (Ok(Method::HEAD), Ok(id)) => Ok(Operation::Head(id)),
        (Ok(Method::PATCH), Ok(id)) => Ok(Operation::Patch(id)),
        (Ok(Method::DELETE), Ok(id)) => Ok(Operation::Delete(id)),
        (Ok(m), Ok(_)) => Err(TusError::MethodNotAllowed(m.to_string())),
    };
    run(st, caller, op, req).await
}

async fn run(st: AppState, caller: Caller, op: Result<Operation, TusError>, req: Request) -> Response {
    dispatch(&st, &caller, op, req).await.unwrap_or_else(|e| {
        if matches!(e, TusError::Internal(_)) {
            st.metrics.uploads.with_label_values(&["error"]).inc();
        }
        e.into_response()
    })
}

async fn dispatch(st: &AppState, caller: &Caller, op: Result<Operation, TusError>, req: Request) -> Result<Response, TusError> {
    if let Ok(Operation::Options) = op {
        return Ok(options::options(st));
    }
    // Who asks comes first: without a key, nothing about the request or
    // the upload it names is looked at.
    let me = caller.require()?;
    let op = op?;
    protocol::check_resumable(req.headers())?;
    let (parts, body) = req.into_parts();
    match op {
        Operation::Create => create::create(st, me, &parts.headers, body).await,
        Operation::Head(id) => head::head(st, me, id).await,
        Operation::Patch(id) => patch::patch(st, me, id, &parts.headers, body).await,
        Operation::Delete(id) => delete::delete(st, me, id).await,
        Operation::Options => unreachable!("answered above"),
    }
}

/// The upload `me` may act on: its owner's own, or any for an admin.
/// Another principal's upload is answered exactly like a missing one, so
/// upload ids cannot be probed.
pub async fn owned(st: &AppState, me: &Principal, id: Uuid) -> Result<Upload, TusError> {
    st.store.get(id).await?.filter(|up| me.may_act_on(up.owner_id)).ok_or(TusError::NotFound)
}

/// Upload-Expires while the upload can still be resumed, and the video link once it is one.
pub fn describe(upload: &Upload, headers: &mut HeaderMap) {
    if !upload.completed {
        let when = httpdate::fmt_http_date(SystemTime::from(upload.expires_at));
        headers.insert(
            names::UPLOAD_EXPIRES,
            HeaderValue::from_str(&when).expect("http date is ascii"),
        );
    }
    if let Some(video) = upload.video_id {
        let link = format!("<{}>; rel=\"video\"", video_path(video));
        headers.insert(
            names::LINK,
            HeaderValue::from_str(&link).expect("ascii link"),
        );
    }
}

/// Refusals that apply before a write: decided on the stored state alone.
pub fn check_writable(upload: &Upload) -> Result<(), TusError> {
    if let Some(why) = &upload.failure {
        return Err(TusError::Refused(why.clone()));
    }
    if upload.is_final() {
        return Err(TusError::FinalNotWritable);
    }
    if upload.completed {
        return Err(TusError::AlreadyComplete);
    }
    if upload.is_expired() {
        return Err(TusError::Expired);
    }
    Ok(())
}
