//! GET/HEAD /hls/{video_id}/content.key: an encrypted video's AES-128 key,
//! the 16 bytes its media playlists' `EXT-X-KEY` names (`../content.key`).
//!
//! Handed out only with a valid playback token (unless the video is public,
//! e.g. made public after it was encoded encrypted), and never stored by
//! anyone: `Cache-Control: private, no-store`; edges pass it through. A
//! video without a key (encoded while public) answers 404.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::Problem;
use shared::extract::VideoId;

use crate::access::{mark_signed, request_token};
use crate::hls::{not_found, OriginState};

pub async fn get_key(State(st): State<OriginState>, VideoId(id): VideoId, method: Method, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let served = match st.served(id).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let res = match st.admit(id, &served, request_token(query.as_deref(), &headers)) {
        Ok(()) if !served.encrypted => not_found(format!("video {id} is not encrypted: it has no content key")),
        Ok(()) => match st.keys.get(id).await {
            Ok(Some(key)) => key_response(key, &method),
            Ok(None) => not_found(format!("video {id} has no content key")),
            Err(e) => Problem::unavailable("content keys", &e).into_response(),
        },
        Err(refused) => refused,
    };
    if served.is_protected() {
        mark_signed(res)
    } else {
        res
    }
}

fn key_response(key: [u8; 16], method: &Method) -> Response {
    let body = if *method == Method::HEAD { axum::body::Body::empty() } else { axum::body::Body::from(key.to_vec()) };
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(key.len()));
    res
}
