//! Lingering reads: a request refused before its body was read (no key, a
//! rate limit, a busy budget) has the rest of that body read and discarded,
//! within bounds, before the answer goes out.
//!
//! Why: hyper closes a connection whose request body was left unread, and a
//! socket closed with unread bytes in its receive buffer sends a TCP reset.
//! NGINX streams uploads through unbuffered (`proxy_request_buffering off`),
//! so it is still writing the body when the refusal arrives; the reset then
//! discards the refusal from NGINX's receive buffer, NGINX sees "connection
//! reset while sending request to upstream", and the creator gets a 503
//! saying no backend answered instead of the 401 that says what to do (CI,
//! `identity::an_upload_refused_for_lack_of_a_key_leaves_no_row_and_no_object`).
//! NGINX does the same for its own clients (`lingering_close`). Bounded in
//! bytes and time, so a refused 2 GiB upload costs at most `LINGER_BYTES`
//! of reading; past that the connection is closed as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use http_body::{Frame, SizeHint};

/// The most of a refused body read before answering.
pub const LINGER_BYTES: u64 = 16 << 20;
/// The longest a refusal waits for the rest of its body.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// Middleware: requests without a body pass untouched; one with a body that
/// the handler dropped unread is drained (within bounds) before the answer.
pub async fn linger(req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let left_unread = Arc::new(Mutex::new(None));
    let (parts, body) = req.into_parts();
    let watched = Watched { inner: Some(body), ended: false, left_unread: left_unread.clone() };
    let response = next.run(Request::from_parts(parts, Body::new(watched))).await;
    let unread = left_unread.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(body) = unread {
        let (bytes, complete) = match drain(body, LINGER_BYTES, LINGER_TIME).await {
            Ok(n) => (n, true),
            Err(n) => (n, false),
        };
        tracing::debug!(bytes, complete, "read the rest of a body the handler left");
    }
    response
}

/// Reads and discards `body`: Ok(bytes) when it ended within the bounds,
/// Err(bytes read) when it did not (too long, too slow, or broken).
async fn drain(body: Body, max_bytes: u64, max_time: Duration) -> Result<u64, u64> {
    let deadline = tokio::time::Instant::now() + max_time;
    let mut data = body.into_data_stream();
    let mut read = 0u64;
    loop {
        match tokio::time::timeout_at(deadline, data.next()).await {
            Ok(None) => return Ok(read),
            Ok(Some(Ok(chunk))) => {
                read += chunk.len() as u64;
                if read > max_bytes {
                    return Err(read);
                }
            }
            Ok(Some(Err(_))) | Err(_) => return Err(read),
        }
    }
}

/// The request body as the handler sees it; dropped before its end, it
/// hands what is left to `linger`.
struct Watched {
    inner: Option<Body>,
    ended: bool,
    left_unread: Arc<Mutex<Option<Body>>>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        // A broken body is not worth lingering for either.
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(HttpBody::size_hint).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Some(body) = self.inner.take().filter(|b| !b.is_end_stream()) {
            *self.left_unread.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    /// A body of `chunks` chunks of 64 KiB that counts the bytes pulled from it.
    fn counted_body(chunks: usize, pulled: Arc<AtomicU64>) -> Body {
        let stream = futures::stream::iter(0..chunks).map(move |_| {
            pulled.fetch_add(64 << 10, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 64 << 10]))
        });
        Body::from_stream(stream)
    }

    async fn send(app: Router, chunks: usize) -> (StatusCode, u64) {
        let pulled = Arc::new(AtomicU64::new(0));
        let req = Request::post("/").body(counted_body(chunks, pulled.clone())).unwrap();
        let res = app.layer(axum::middleware::from_fn(linger)).oneshot(req).await.unwrap();
        (res.status(), pulled.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_body_refused_unread_is_read_to_its_end_before_the_answer() {
        let app = Router::new().route("/", post(|| async { StatusCode::UNAUTHORIZED }));
        assert_eq!(send(app, 16).await, (StatusCode::UNAUTHORIZED, 16 * (64 << 10)));
    }

    #[tokio::test]
    async fn a_body_longer_than_the_bound_is_read_only_up_to_it() {
        let app = Router::new().route("/", post(|| async { StatusCode::UNAUTHORIZED }));
        let chunks = (LINGER_BYTES / (64 << 10)) as usize * 4;
        let (status, pulled) = send(app, chunks).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(pulled > LINGER_BYTES && pulled <= LINGER_BYTES + (64 << 10), "pulled {pulled}");
    }

    #[tokio::test]
    async fn a_body_the_handler_read_is_not_read_again() {
        let app = Router::new().route("/", post(|body: Bytes| async move { body.len().to_string() }));
        let (status, pulled) = send(app, 4).await;
        assert_eq!((status, pulled), (StatusCode::OK, 4 * (64 << 10)));
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_given_up_after_the_time_bound() {
        tokio::time::pause();
        let stalled = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        assert_eq!(drain(stalled, LINGER_BYTES, LINGER_TIME).await, Err(0));
    }
}
