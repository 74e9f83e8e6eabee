//! OPTIONS: what this server supports. Needs no Tus-Resumable, so a client
//! can discover the version before speaking it.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::checksum::Algorithm;
use crate::protocol::{names, EXTENSIONS, TUS_VERSION};

pub fn options(st: &AppState) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(names::TUS_VERSION, HeaderValue::from_static(TUS_VERSION));
    h.insert(names::TUS_EXTENSION, HeaderValue::from_static(EXTENSIONS));
    h.insert(names::TUS_MAX_SIZE, HeaderValue::from(st.tus.max_size.0));
    h.insert(
        names::TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(Algorithm::ADVERTISED),
    );
    res
}
