//! What is on air: broadcasts by stream and by playback id, who may
//! publish (the key check, one publisher per stream), and the end of a
//! broadcast after its grace period, which hands the recording to
//! [`crate::replay`].
//!
//! An ended broadcast stays reachable by its playback id for a while, so
//! players see EXT-X-ENDLIST rather than a 404, until a new broadcast of the
//! same stream replaces it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::storage::Storage;
use uuid::Uuid;

use crate::broadcast::{AttachError, Broadcast};
use crate::catalogue::{LiveState, LiveStreams};
use crate::configuration::Settings;
use crate::dvr::Recorder;
use crate::events::LiveWatch;
use crate::metrics::LiveMetrics;
use crate::replay::Replays;

/// Why a publisher was refused; the label of the refusals metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    WrongKey,
    AlreadyPublishing,
    WrongApp,
    UnsupportedCodec,
    InputTooLarge,
    Idle,
    EncoderFailed,
    Unavailable,
    TooManyConnections,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::WrongKey => "wrong-key",
            Self::AlreadyPublishing => "already-publishing",
            Self::WrongApp => "wrong-app",
            Self::UnsupportedCodec => "unsupported-codec",
            Self::InputTooLarge => "input-too-large",
            Self::Idle => "idle",
            Self::EncoderFailed => "encoder-failed",
            Self::Unavailable => "unavailable",
            Self::TooManyConnections => "too-many-connections",
        }
    }
}

#[derive(Default)]
struct Maps {
    by_stream: HashMap<Uuid, Arc<Broadcast>>,
    by_playback: HashMap<Uuid, Arc<Broadcast>>,
}

#[derive(Clone)]
pub struct OnAir {
    maps: Arc<Mutex<Maps>>,
    next_conn: Arc<AtomicU64>,
    pub streams: LiveStreams,
    storage: Storage,
    pub metrics: LiveMetrics,
    pub settings: Arc<Settings>,
    replays: Replays,
    /// The watchers behind `/api/v1/live/{id}/events`.
    pub watch: LiveWatch,
    /// Viewer sessions (the streaming origin issues them with live masters), for live counts.
    pub sessions: shared::sessions::Sessions,
}

/// A publisher attached to a broadcast; leaving (drop) starts the grace period.
pub struct Publishing {
    pub broadcast: Arc<Broadcast>,
    conn: u64,
    on_air: OnAir,
    pub resumed: bool,
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.on_air.metrics.publishers.dec();
        if let Some(epoch) = self.broadcast.leave(self.conn) {
            let (on_air, b) = (self.on_air.clone(), self.broadcast.clone());
            tracing::info!(broadcast = %b.id, grace = ?on_air.settings.grace.0, "publisher left; waiting for it to come back");
            tokio::spawn(async move {
                tokio::time::sleep(on_air.settings.grace.0).await;
                on_air.end_if_still(b, epoch).await;
            });
        }
    }
}

impl OnAir {
    pub fn new(streams: LiveStreams, storage: Storage, metrics: LiveMetrics, settings: Arc<Settings>, replays: Replays, watch: LiveWatch, sessions: shared::sessions::Sessions) -> Self {
        Self { maps: Arc::default(), next_conn: Arc::new(AtomicU64::new(1)), streams, storage, metrics, settings, replays, watch, sessions }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn by_playback(&self, playback: Uuid) -> Option<Arc<Broadcast>> {
        self.maps().by_playback.get(&playback).cloned()
    }

    pub fn by_stream(&self, stream: Uuid) -> Option<Arc<Broadcast>> {
        self.maps().by_stream.get(&stream).cloned()
    }

    pub fn refuse(&self, why: Refusal) {
        self.metrics.refusals.with_label_values(&[why.label()]).inc();
    }

    /// The key check and the one-publisher rule; a stream in its grace
    /// period is continued, any other starts a new broadcast.
    pub async fn publish(&self, raw_key: &str) -> Result<Publishing, Refusal> {
        let stream = match self.streams.by_key(raw_key).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Refusal::WrongKey),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "catalogue unreachable; refusing publisher");
                return Err(Refusal::Unavailable);
            }
        };
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (broadcast, resumed) = {
            let mut maps = self.maps();
            match maps.by_stream.get(&stream.id).cloned() {
                Some(b) => match b.attach(conn) {
                    Ok(()) => (b, true),
                    Err(AttachError::Busy) => return Err(Refusal::AlreadyPublishing),
                    // Ending now: its replay is being made; a new broadcast starts.
                    Err(AttachError::Ended) => self.start(&mut maps, stream, conn),
                },
                None => self.start(&mut maps, stream, conn),
            }
        };
        self.metrics.publishers.inc();
        if !resumed {
            if let Err(e) = self.streams.set_state(broadcast.stream.id, LiveState::Live).await {
                tracing::warn!(error = format!("{e:#}"), "could not mark the stream live");
            }
        }
        Ok(Publishing { broadcast, conn, on_air: self.clone(), resumed })
    }

    fn start(&self, maps: &mut Maps, stream: crate::catalogue::LiveStream, conn: u64) -> (Arc<Broadcast>, bool) {
        let id = Uuid::now_v7();
        let b = Arc::new(Broadcast::new(id, stream, Recorder::start(self.storage.clone(), id, self.metrics.clone())));
        b.attach(conn).expect("a new broadcast has no publisher");
        maps.by_stream.insert(b.stream.id, b.clone());
        maps.by_playback.insert(b.stream.playback_id, b.clone());
        tracing::info!(stream = %b.stream.id, broadcast = %b.id, "broadcast started");
        (b, false)
    }

    async fn end_if_still(&self, b: Arc<Broadcast>, epoch: u64) {
        if !b.end_if_still(epoch) {
            return;
        }
        tracing::info!(stream = %b.stream.id, broadcast = %b.id, "broadcast ended: the publisher did not come back within the grace period");
        {
            let mut maps = self.maps();
            if maps.by_stream.get(&b.stream.id).is_some_and(|cur| Arc::ptr_eq(cur, &b)) {
                maps.by_stream.remove(&b.stream.id);
            }
        }
        // Ended now; the replay's id follows once it is in the catalogue.
        if let Err(e) = self.streams.set_state(b.stream.id, LiveState::Ended).await {
            tracing::warn!(error = format!("{e:#}"), "could not mark the stream ended");
        }
        // Players keep the ended playlist for a while; then the id is free.
        let maps = self.maps.clone();
        let linger = b.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            let mut m = maps.lock().unwrap_or_else(|p| p.into_inner());
            if m.by_playback.get(&linger.stream.playback_id).is_some_and(|cur| Arc::ptr_eq(cur, &linger)) {
                m.by_playback.remove(&linger.stream.playback_id);
            }
        });
        self.replays.make(b).await;
    }
}
