//! A proxy in front of an origin (or a parent edge) that can hold every
//! request but masters until released, and counts what it forwards: to
//! make requests meet in one flight, or keep a revalidation pending.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// A proxy in front of an origin that holds every request but masters
/// (per-viewer, never cached) until opened, and counts what it forwards.
pub struct Gate {
    pub url: String,
    open: watch::Sender<bool>,
    /// Requests held (and forwarded) since the last `hold`.
    pub held: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct GateState {
    upstream: String,
    client: reqwest::Client,
    open: watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
}

async fn forward(Extract(g): Extract<GateState>, req: Request) -> Response {
    if !req.uri().path().ends_with("/master.m3u8") {
        g.held.fetch_add(1, Ordering::SeqCst);
        let _ = g.open.clone().wait_for(|open| *open).await;
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut headers = req.headers().clone();
    headers.remove(axum::http::header::HOST);
    match g.client.request(req.method().clone(), format!("{}{pq}", g.upstream)).headers(headers).send().await {
        Ok(res) => {
            let mut out = Response::builder().status(res.status());
            for (k, v) in res.headers().iter().filter(|(k, _)| *k != axum::http::header::TRANSFER_ENCODING && *k != axum::http::header::CONNECTION) {
                out = out.header(k, v);
            }
            out.body(Body::from_stream(res.bytes_stream())).expect("valid response")
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl Gate {
    /// `client` forwards: the caller decides e.g. whether it decompresses.
    pub async fn new(upstream: &str, client: reqwest::Client) -> Self {
        let (open, rx) = watch::channel(true);
        let held = Arc::new(AtomicUsize::new(0));
        let state = GateState { upstream: upstream.to_owned(), client, open: rx, held: held.clone() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, open, held, task }
    }

    pub fn hold(&self) {
        self.held.store(0, Ordering::SeqCst);
        self.open.send_replace(false);
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}
