//! One watcher per watched thing, fanned out to every subscriber: the
//! server-sent event streams (a video's processing, a tus upload's
//! progress) subscribe here instead of each polling the database itself.
//!
//! A [`Hub`] maps a key (a video or upload id) to a `tokio::sync::watch`
//! channel holding that thing's latest snapshot. The first subscriber starts
//! the one task that drives the caller's source stream (one poll per item)
//! into the channel; later subscribers join it and read the current snapshot
//! at once. A `watch` channel, not a broadcast one, because a late or slow
//! subscriber needs the current state, not every intermediate one, and its
//! memory is one snapshot however many subscribers there are. The task ends
//! when its source ends (a terminal state, which subscribers still read) or
//! when the last subscriber leaves; a subscriber arriving after that starts a
//! new one. Polling, not LISTEN/NOTIFY or pub/sub, because the sources are
//! already polls of PostgreSQL and Redis and what made them costly was their
//! number, not their kind.
//!
//! Subscribers are capped per service ([`WatchSettings`]); beyond the cap a
//! subscription is refused with 503 problem+json and `Retry-After`
//! ([`Full`]). Gauges count subscribers and watchers, and a counter counts
//! the watchers' polls, so "N subscribers cost one watcher" is observable.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::configuration::{Env, Seconds};
use crate::error::Problem;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Default)]
pub struct WatchSettings {
    pub max_subscribers: usize,
    pub retry_after: Seconds,
}

impl WatchSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            max_subscribers: env.optional("SSE_MAX_SUBSCRIBERS", "10000", "event-stream subscribers this process serves at once; more get 503"),
            retry_after: env.optional("SSE_RETRY_AFTER", "5s", "Retry-After sent with the 503 when the subscriber cap is reached"),
        }
    }
}

#[derive(Clone)]
struct WatchMetrics {
    subscribers: IntGauge,
    watchers: IntGauge,
    polls: IntCounter,
    refused: IntCounter,
}

impl WatchMetrics {
    fn new(m: &Metrics) -> Self {
        Self {
            subscribers: m.register(IntGauge::new("sse_subscribers", "Event-stream subscribers connected now").expect("valid metric")),
            watchers: m.register(IntGauge::new("sse_watchers", "Watcher tasks polling for event-stream subscribers now (one per watched id)").expect("valid metric")),
            polls: m.register(IntCounter::new("sse_watcher_polls_total", "Polls made by watcher tasks, however many subscribers they serve").expect("valid metric")),
            refused: m.register(IntCounter::new("sse_subscribers_refused_total", "Event-stream subscriptions refused at the subscriber cap").expect("valid metric")),
        }
    }
}

/// The subscriber cap was reached: answered as 503 problem+json with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub max_subscribers: usize,
    pub retry_after: Seconds,
}

impl IntoResponse for Full {
    fn into_response(self) -> Response {
        let secs = self.retry_after.0.as_secs().max(1);
        let mut res = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-subscribers",
            "Too many event-stream subscribers",
            format!("This server already serves {} event streams, its limit. Retry in {secs} s, or poll the resource instead.", self.max_subscribers),
        )
        .with("max_subscribers", self.max_subscribers)
        .into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        res
    }
}

type Sender<S> = Arc<watch::Sender<Option<S>>>;

/// Watched keys to their channels, shared by every subscriber of a service.
pub struct Hub<K, S> {
    inner: Arc<Inner<K, S>>,
}

impl<K, S> Clone for Hub<K, S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<K, S> {
    /// Held only to look up, insert or remove: never across an await.
    watchers: Mutex<HashMap<K, Sender<S>>>,
    slots: Arc<Semaphore>,
    settings: WatchSettings,
    metrics: WatchMetrics,
}

impl<K, S> Hub<K, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    S: Clone + PartialEq + Send + Sync + 'static,
{
    pub fn new(settings: WatchSettings, metrics: &Metrics) -> Self {
        let inner = Inner {
            watchers: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(settings.max_subscribers)),
            metrics: WatchMetrics::new(metrics),
            settings,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Joins `key`'s watcher, starting it with `source()` if there is none.
    /// Each item `source` yields is one poll's snapshot; it ends after a
    /// terminal one. Must be called inside a Tokio runtime.
    pub fn subscribe<F>(&self, key: K, source: F) -> Result<Subscription<S>, Full>
    where
        F: FnOnce() -> BoxStream<'static, S>,
    {
        let full = || Full { max_subscribers: self.inner.settings.max_subscribers, retry_after: self.inner.settings.retry_after };
        let permit = self.inner.slots.clone().try_acquire_owned().map_err(|_| {
            self.inner.metrics.refused.inc();
            full()
        })?;
        let rx = {
            let mut map = self.inner.watchers.lock().expect("watch map lock");
            match map.get(&key) {
                Some(tx) => tx.subscribe(),
                None => {
                    let tx: Sender<S> = Arc::new(watch::Sender::new(None));
                    let rx = tx.subscribe();
                    map.insert(key.clone(), tx.clone());
                    self.inner.metrics.watchers.inc();
                    tokio::spawn(self.clone().drive(key, tx, source()));
                    rx
                }
            }
        };
        self.inner.metrics.subscribers.inc();
        Ok(Subscription { rx, _slot: Slot { _permit: permit, gauge: self.inner.metrics.subscribers.clone() } })
    }

    /// The one task behind a key: publishes each new snapshot, and ends when
    /// the source does or nobody listens any more.
    async fn drive(self, key: K, tx: Sender<S>, mut source: BoxStream<'static, S>) {
        loop {
            tokio::select! {
                // Cancel-safe: the stream keeps its own state between polls.
                item = source.next() => match item {
                    Some(snapshot) => {
                        self.inner.metrics.polls.inc();
                        tx.send_if_modified(|current| {
                            let changed = current.as_ref() != Some(&snapshot);
                            if changed {
                                *current = Some(snapshot);
                            }
                            changed
                        });
                    }
                    None => break,
                },
                _ = tx.closed() => {
                    if self.forget(&key, &tx, true) {
                        return;
                    }
                }
            }
        }
        // Terminal: receivers keep the last snapshot after the sender goes.
        self.forget(&key, &tx, false);
    }

    /// Removes `key`'s entry (if it is still `tx`) and says so; with
    /// `if_unwatched`, only when nobody subscribed meanwhile. Subscribers
    /// join under this lock, so "nobody" checked here is final.
    fn forget(&self, key: &K, tx: &Sender<S>, if_unwatched: bool) -> bool {
        let mut map = self.inner.watchers.lock().expect("watch map lock");
        if if_unwatched && tx.receiver_count() > 0 {
            return false;
        }
        if map.get(key).is_some_and(|t| Arc::ptr_eq(t, tx)) {
            map.remove(key);
            self.inner.metrics.watchers.dec();
        }
        true
    }
}

/// A subscriber's place: frees its slot under the cap when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One subscriber's view of a watcher.
pub struct Subscription<S> {
    rx: watch::Receiver<Option<S>>,
    _slot: Slot,
}

impl<S: Clone + Send + Sync + 'static> Subscription<S> {
    /// Every distinct snapshot from the current one on (intermediate ones a
    /// slow reader missed are skipped), ending after the watcher's last. The
    /// stream is fused: polled again after its end it stays ended.
    pub fn into_stream(self) -> impl Stream<Item = S> + Send + 'static {
        futures::stream::unfold((self, true), |(mut sub, first)| async move {
            if !first {
                sub.rx.changed().await.ok()?;
            }
            loop {
                let current = sub.rx.borrow_and_update().clone();
                if let Some(s) = current {
                    return Some((s, (sub, false)));
                }
                sub.rx.changed().await.ok()?;
            }
        })
        .fuse()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures::channel::mpsc;

    use super::*;

    fn hub(max: usize) -> Hub<u32, u64> {
        Hub::new(WatchSettings { max_subscribers: max, retry_after: Seconds(Duration::from_secs(7)) }, &Metrics::new("test"))
    }

    /// A source the test feeds by hand, counting how often it was started.
    fn source(starts: &Arc<AtomicUsize>, rx: mpsc::UnboundedReceiver<u64>) -> impl FnOnce() -> BoxStream<'static, u64> {
        let starts = starts.clone();
        move || {
            starts.fetch_add(1, Ordering::SeqCst);
            rx.boxed()
        }
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn many_subscribers_share_one_watcher_and_all_see_the_last_snapshot() {
        let hub = hub(1000);
        let starts = Arc::new(AtomicUsize::new(0));
        let (feed, rx) = mpsc::unbounded();
        let mut rx = Some(rx);
        let mut streams = Vec::new();
        for _ in 0..500 {
            let sub = match rx.take() {
                Some(rx) => hub.subscribe(1, source(&starts, rx)),
                None => hub.subscribe(1, || panic!("a second watcher was started")),
            };
            streams.push(sub.unwrap().into_stream().boxed());
        }
        assert_eq!((starts.load(Ordering::SeqCst), hub.inner.metrics.watchers.get(), hub.inner.metrics.subscribers.get()), (1, 1, 500));
        for v in [1, 1, 2, 3] {
            feed.unbounded_send(v).unwrap();
        }
        drop(feed); // the source ends: 3 is terminal
        for s in streams {
            let seen: Vec<u64> = s.collect().await;
            // A reader may miss intermediate snapshots, never the last one, and never sees one twice.
            assert_eq!(seen.last(), Some(&3));
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        }
        assert_eq!(hub.inner.metrics.polls.get(), 4);
        eventually("the watcher to end", || hub.inner.metrics.watchers.get() == 0).await;
        assert_eq!(hub.inner.metrics.subscribers.get(), 0);
    }

    #[tokio::test]
    async fn the_watcher_stops_when_its_last_subscriber_leaves() {
        let hub = hub(10);
        let starts = Arc::new(AtomicUsize::new(0));
        let (feed, rx) = mpsc::unbounded::<u64>();
        let a = hub.subscribe(7, source(&starts, rx)).unwrap();
        let b = hub.subscribe(7, || panic!("joins the running watcher")).unwrap();
        drop(a);
        feed.unbounded_send(1).unwrap();
        let mut b = b.into_stream().boxed();
        assert_eq!(b.next().await, Some(1), "one subscriber left keeps it running");
        drop(b);
        eventually("the watcher to end", || hub.inner.metrics.watchers.get() == 0).await;
        eventually("the source to be dropped", || feed.is_closed()).await;
        // A newcomer starts afresh.
        let (_feed2, rx2) = mpsc::unbounded::<u64>();
        let _c = hub.subscribe(7, source(&starts, rx2)).unwrap();
        assert_eq!((starts.load(Ordering::SeqCst), hub.inner.metrics.watchers.get()), (2, 1));
    }

    #[tokio::test]
    async fn subscribers_beyond_the_cap_get_503_with_retry_after() {
        let hub = hub(2);
        let (_feed, rx) = mpsc::unbounded::<u64>();
        let a = hub.subscribe(1, || rx.boxed()).unwrap();
        let _b = hub.subscribe(2, || futures::stream::pending().boxed()).unwrap();
        let full = hub.subscribe(1, || panic!("refused before any watcher")).err().expect("third is refused");
        assert_eq!(hub.inner.metrics.refused.get(), 1);
        let res = full.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        assert_eq!(res.headers()[header::CONTENT_TYPE], crate::error::PROBLEM_JSON);
        drop(a);
        assert!(hub.subscribe(1, || futures::stream::pending().boxed()).is_ok(), "a slot frees when a subscriber leaves");
    }

    #[tokio::test]
    async fn a_stream_polled_after_its_end_stays_ended() {
        let hub = hub(1);
        let mut s = hub.subscribe(1, || futures::stream::iter([5u64]).boxed()).unwrap().into_stream().boxed();
        assert_eq!(s.next().await, Some(5));
        assert_eq!(s.next().await, None);
        assert_eq!(s.next().await, None);
    }
}
