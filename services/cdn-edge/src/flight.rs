//! Request coalescing: N concurrent misses for one object make exactly one
//! origin request, and every waiting request streams the bytes as they
//! arrive rather than after the whole object is in.
//!
//! A [`Flight`] is one origin fetch, run by a spawned task (so the viewer
//! that started it may hang up without cancelling the others). The task
//! appends body chunks to the flight; readers walk the chunk list from the
//! start at their own pace and wait on a watch channel for more. When the
//! body is complete and cacheable, the task stores it in memory and on disk
//! and only then leaves the table, so a request never finds neither the
//! object nor its flight.
//!
//! Only objects within EDGE_MAX_OBJECT_BYTES are buffered; the head of
//! anything larger says so and each request streams it from the origin
//! itself, keeping memory bounded. So are all flights together: each
//! reserves its length against EDGE_FLIGHT_BYTES ([`FlightBudget`]) and
//! spills to pass-through when it does not fit. An answer without a
//! length (the live origin streams a part while the encoder writes it)
//! reserves [`UNSIZED_RESERVE`] and is coalesced like any other: every
//! waiting viewer gets its chunks as they come; one that outgrows the
//! reservation fails, and that key passes through from then on.
//!
//! A 404 is remembered briefly ([`crate::negative`]) before its flight
//! leaves the table, like a stored object; no other error is kept (a 403
//! for one viewer's token says nothing about the next viewer's).
//!
//! A flight fetches with the playback token of the request that started it
//! (`x-playback-token`), so the origin checks it; every request reading the
//! flight is checked against the answer's signed mark on its own token
//! (`crate::serve`), so joining a flight gives no bytes a request could not
//! have fetched itself.
//!
//! The body stream a reader gets is fused: tower-http's compression layer
//! polls a body again after it has ended, and an unfused `unfold` panics
//! then (issue 19: the first gzip request for any text object lost its
//! connection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use crate::budget::{FlightBudget, Reservation};
use crate::fetch::{keep, Origin};
use crate::negative::NotFound;
use crate::object::{CachedObject, Freshness};
use crate::tiers::Tiers;

/// What a flight without a length reserves: far above a live part (a
/// third of a second at the top rung is about 120 KB), far below the budget.
pub const UNSIZED_RESERVE: u64 = 8 << 20;
/// Error bodies (problem details) are small; a larger one is cut off.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// What the origin answered, once known.
#[derive(Debug)]
pub enum Head {
    /// Status and headers; the body follows as chunks.
    /// `len`: None while an answer without a length is still arriving.
    Response { status: StatusCode, headers: HeaderMap, len: Option<u64> },
    /// The origin confirmed the stale copy (304): here it is, fresh again.
    Refreshed(Arc<CachedObject>),
    /// Too large (or of unknown size) to buffer: fetch it yourself.
    TooLarge,
    /// Would take the flights past their byte budget: fetch it yourself.
    Spilled,
    Unreachable(String),
}

#[derive(Default)]
struct State {
    head: Option<Arc<Head>>,
    chunks: Vec<Bytes>,
    end: Option<Result<(), String>>,
    /// This flight's bytes against the budget, until the flight is dropped.
    reservation: Option<Reservation>,
}

pub struct Flight {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// Set by a purge while the fetch runs: its bytes still reach the
    /// requests already waiting, but are not stored.
    purged: std::sync::atomic::AtomicBool,
}

impl Flight {
    fn new() -> Self {
        Self { state: Mutex::new(State::default()), changed: watch::Sender::new(0), purged: Default::default() }
    }

    /// A flight that is already over: a remembered 404, served like any
    /// other answer.
    fn answered(not_found: &NotFound) -> Self {
        let f = Self::new();
        let len = not_found.body.len() as u64;
        f.update(|s| {
            s.head = Some(Arc::new(Head::Response { status: StatusCode::NOT_FOUND, headers: not_found.headers.clone(), len: Some(len) }));
            s.chunks.push(not_found.body.clone());
            s.end = Some(Ok(()));
        });
        f
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("flight lock"));
        self.changed.send_modify(|n| *n += 1);
    }

    pub async fn head(&self) -> Arc<Head> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(h) = self.state.lock().expect("flight lock").head.clone() {
                return h;
            }
            if rx.changed().await.is_err() {
                return Arc::new(Head::Unreachable("fetch ended without an answer".into()));
            }
        }
    }

    /// The body bytes in `[from, to]` (inclusive), as they arrive.
    pub fn body(self: Arc<Self>, from: u64, to: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        enum Step {
            Chunk(Bytes),
            Done,
            Failed(String),
            Wait,
        }
        let rx = self.changed.subscribe();
        // State: the flight, our receiver, next chunk index, its byte offset, finished.
        futures::stream::unfold((self, rx, 0usize, 0u64, false), move |(f, mut rx, i, pos, done)| async move {
            if done || pos > to {
                return None;
            }
            loop {
                let step = {
                    let st = f.state.lock().expect("flight lock");
                    match (st.chunks.get(i), &st.end) {
                        (Some(c), _) => Step::Chunk(c.clone()),
                        (None, Some(Ok(()))) => Step::Done,
                        (None, Some(Err(e))) => Step::Failed(e.clone()),
                        (None, None) => Step::Wait,
                    }
                };
                match step {
                    Step::Chunk(chunk) => {
                        let (start, end) = (pos, pos + chunk.len() as u64);
                        let lo = from.saturating_sub(start).min(chunk.len() as u64) as usize;
                        let hi = (to + 1).saturating_sub(start).min(chunk.len() as u64) as usize;
                        // Chunks before the range yield nothing (filtered out below).
                        let part = if lo < hi { chunk.slice(lo..hi) } else { Bytes::new() };
                        return Some((Ok(part), (f, rx, i + 1, end, false)));
                    }
                    Step::Done => return None,
                    Step::Failed(e) => return Some((Err(std::io::Error::other(e)), (f, rx, i, pos, true))),
                    Step::Wait => {
                        if rx.changed().await.is_err() {
                            return Some((Err(std::io::Error::other("fetch ended early")), (f, rx, i, pos, true)));
                        }
                    }
                }
            }
        })
        .fuse()
        .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
    }

    /// The whole body once complete (for rewriting a playlist).
    pub async fn collect(self: Arc<Self>) -> Result<Bytes, std::io::Error> {
        let mut out = BytesMut::new();
        let mut body = std::pin::pin!(self.body(0, u64::MAX - 1));
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

/// The in-flight fetches by key, and where finished objects go.
#[derive(Clone)]
pub struct Flights {
    table: Arc<Mutex<HashMap<String, Arc<Flight>>>>,
    origin: Origin,
    tiers: Tiers,
    max_object: u64,
    /// Keys the origin answered too large to buffer, for a while: their
    /// requests go straight through, instead of each paying a dropped GET
    /// first (Varnish's hit-for-pass).
    too_large: moka::sync::Cache<String, ()>,
    budget: FlightBudget,
}

/// How long a key stays known as too large to buffer.
const TOO_LARGE_FOR: Duration = Duration::from_secs(60);

impl Flights {
    pub fn new(origin: Origin, tiers: Tiers, max_object: u64, budget: FlightBudget) -> Self {
        let too_large = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(TOO_LARGE_FOR).build();
        Self { table: Default::default(), origin, tiers, max_object, too_large, budget }
    }

    /// Whether the key was lately found too large to buffer.
    pub fn passes(&self, key: &str) -> bool {
        self.too_large.contains_key(key)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Joins the key's flight, or starts one (with `stale`'s validators, so
    /// the origin can answer 304, and the starting request's playback
    /// token). True when this call started it.
    pub fn join(&self, key: &str, stale: Option<Arc<CachedObject>>, token: Option<&str>) -> (Arc<Flight>, bool) {
        let mut table = self.table.lock().expect("flights lock");
        if let Some(f) = table.get(key) {
            return (f.clone(), false);
        }
        // Checked under the table lock: a flight stores its object before it
        // leaves the table, so either the object or the flight is seen here.
        if let Some(fresh) = self.tiers.memory.get(key).filter(|o| o.usable() == crate::object::Usable::Fresh) {
            let f = Arc::new(Flight::new());
            f.update(|s| s.head = Some(Arc::new(Head::Refreshed(fresh))));
            return (f, false);
        }
        if let Some(not_found) = self.tiers.negative.get(key) {
            return (Arc::new(Flight::answered(&not_found)), false);
        }
        let flight = Arc::new(Flight::new());
        table.insert(key.to_owned(), flight.clone());
        drop(table);
        let this = self.clone();
        let (f, key) = (flight.clone(), key.to_owned());
        let token = token.and_then(|t| HeaderValue::from_str(t).ok());
        tokio::spawn(async move {
            this.run(&f, &key, stale, token).await;
            // Only this flight: a purge may have replaced it with a newer one.
            let mut table = this.table.lock().expect("flights lock");
            if table.get(&key).is_some_and(|current| Arc::ptr_eq(current, &f)) {
                table.remove(&key);
            }
        });
        (flight, true)
    }

    /// Keeps fetches that are running for purged keys from storing what
    /// they fetched, and lets the next request start a fresh one.
    pub fn purge(&self, matches: impl Fn(&str) -> bool) {
        // A purged object may come back small enough to cache.
        self.too_large.invalidate_all();
        self.table.lock().expect("flights lock").retain(|key, flight| {
            if matches(key) {
                flight.purged.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            !matches(key)
        });
    }

    async fn run(&self, flight: &Flight, key: &str, stale: Option<Arc<CachedObject>>, token: Option<HeaderValue>) {
        let mut conditional = HeaderMap::new();
        if let Some(t) = token {
            conditional.insert(shared::playback::FORWARDED_TOKEN_HEADER, t);
        }
        if let Some(s) = &stale {
            for (from, to) in [(header::ETAG, header::IF_NONE_MATCH), (header::LAST_MODIFIED, header::IF_MODIFIED_SINCE)] {
                if let Some(v) = s.headers.get(from) {
                    conditional.insert(to, v.clone());
                }
            }
        }
        let res = match self.origin.get(key, conditional).await {
            Ok(r) => r,
            Err(e) => return flight.update(|s| s.head = Some(Arc::new(Head::Unreachable(e)))),
        };
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if status == StatusCode::NOT_MODIFIED {
            if let Some(fresh) = stale.and_then(|s| s.refreshed(&keep(res.headers()))) {
                let fresh = Arc::new(fresh);
                self.store(flight, key, fresh.clone()).await;
                return flight.update(|s| s.head = Some(Arc::new(Head::Refreshed(fresh))));
            }
        }
        let headers = keep(res.headers());
        let freshness = Freshness::from_headers(&headers).filter(|_| status == StatusCode::OK);
        let limit = if status == StatusCode::OK { self.max_object } else { MAX_ERROR_BODY };
        let len = res.content_length();
        if len.is_some_and(|l| l > limit) {
            self.too_large.insert(key.to_owned(), ());
            return flight.update(|s| s.head = Some(Arc::new(Head::TooLarge)));
        }
        let reserved = len.unwrap_or(limit.min(UNSIZED_RESERVE));
        let Some(reservation) = self.budget.reserve(reserved) else {
            return flight.update(|s| s.head = Some(Arc::new(Head::Spilled)));
        };
        flight.update(|s| {
            s.reservation = Some(reservation);
            s.head = Some(Arc::new(Head::Response { status, headers: headers.clone(), len }));
        });
        let mut body = res.bytes_stream();
        let mut got = 0u64;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    got += c.len() as u64;
                    if got > reserved {
                        if len.is_none() {
                            self.too_large.insert(key.to_owned(), ());
                        }
                        return flight.update(|s| s.end = Some(Err(format!("origin sent more than {reserved} bytes (its Content-Length, or the reservation for an answer without one)"))));
                    }
                    flight.update(|s| s.chunks.push(c));
                }
                Err(e) => return flight.update(|s| s.end = Some(Err(format!("origin body: {e}")))),
            }
        }
        if let Some(len) = len.filter(|l| *l != got) {
            return flight.update(|s| s.end = Some(Err(format!("origin sent {got} of {len} bytes"))));
        }
        let remembered = freshness.is_some() || (status == StatusCode::NOT_FOUND && !no_store(&headers));
        let body = remembered.then(|| {
            let st = flight.state.lock().expect("flight lock");
            let mut buf = BytesMut::with_capacity(got as usize);
            st.chunks.iter().for_each(|c| buf.extend_from_slice(c));
            buf.freeze()
        });
        // Readers are released first; the flight stays in the table (and
        // serves late joiners from its chunks) until the answer is stored.
        flight.update(|s| s.end = Some(Ok(())));
        match (body, freshness) {
            (Some(body), Some(freshness)) => {
                let object = Arc::new(CachedObject { headers, body, stored_at: std::time::SystemTime::now(), freshness });
                self.store(flight, key, object).await;
            }
            (Some(body), None) => {
                use std::sync::atomic::Ordering::SeqCst;
                if !flight.purged.load(SeqCst) {
                    self.tiers.negative.insert(key, NotFound { headers, body });
                }
                // As for objects: a purge that landed meanwhile wins.
                if flight.purged.load(SeqCst) {
                    self.tiers.negative.purge(key);
                }
            }
            _ => {}
        }
    }

    async fn store(&self, flight: &Flight, key: &str, object: Arc<CachedObject>) {
        use std::sync::atomic::Ordering::SeqCst;
        if flight.purged.load(SeqCst) {
            return;
        }
        self.tiers.store(key, object).await;
        // A purge that landed during the writes wins.
        if flight.purged.load(SeqCst) {
            self.tiers.purge(key);
        }
    }
}

/// Whether the origin asked that this answer not be kept by a shared cache
/// (`private` does not count on a signed answer: see `crate::access`).
fn no_store(headers: &HeaderMap) -> bool {
    let signed = crate::access::is_signed(headers);
    headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).is_some_and(|cc| {
        cc.split(',').map(|d| d.trim().to_ascii_lowercase()).any(|d| d == "no-store" || (d == "private" && !signed))
    })
}
