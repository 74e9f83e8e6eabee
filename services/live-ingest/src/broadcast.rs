//! One broadcast: a live stream from its first publish until it ends. It
//! owns the renditions (fixed at the first encoder start, from the source's
//! height), who publishes now, and the grace period: a publisher that
//! leaves may come back within it and continue the same broadcast after a
//! discontinuity; otherwise the broadcast ends, every playlist gets
//! EXT-X-ENDLIST, and the recording goes to the catalogue.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::catalogue::LiveStream;
use crate::configuration::Settings;
use crate::dvr::Recorder;
use crate::ladder::Output;
use crate::rendition::{Kind, Rendition};

pub struct Broadcast {
    pub id: Uuid,
    pub stream: LiveStream,
    pub started: SystemTime,
    outputs: OnceLock<Vec<Output>>,
    renditions: OnceLock<Vec<Arc<Rendition>>>,
    /// The connection publishing now, if any.
    publisher: Mutex<Option<u64>>,
    /// Bumped at every attach and leave: a grace timer ends the broadcast
    /// only if nothing happened since it started.
    epoch: AtomicU64,
    ended: AtomicBool,
    pub recorder: Recorder,
    pub ingest: Mutex<IngestStats>,
    /// Held by the encoder feeding the renditions: a publisher that comes
    /// back waits until the last one's final fragments are packaged.
    pub encoding: Arc<tokio::sync::Mutex<()>>,
}

/// The publisher's rate, measured over the last few seconds of tags.
#[derive(Debug, Default, Clone)]
pub struct IngestStats {
    window_start: Option<Instant>,
    bytes: u64,
    frames: u64,
    pub bitrate_bps: u64,
    pub fps: f64,
}

impl IngestStats {
    pub fn add(&mut self, bytes: usize, video_frame: bool) {
        let now = Instant::now();
        let start = *self.window_start.get_or_insert(now);
        self.bytes += bytes as u64;
        self.frames += u64::from(video_frame);
        let elapsed = now - start;
        if elapsed >= Duration::from_secs(2) {
            self.bitrate_bps = (self.bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.fps = self.frames as f64 / elapsed.as_secs_f64();
            *self = Self { window_start: Some(now), bitrate_bps: self.bitrate_bps, fps: self.fps, ..Self::default() };
        }
    }
}

/// Why a publisher cannot attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    Busy,
    Ended,
}

impl Broadcast {
    pub fn new(id: Uuid, stream: LiveStream, recorder: Recorder) -> Self {
        Self {
            id,
            stream,
            started: SystemTime::now(),
            outputs: OnceLock::new(),
            renditions: OnceLock::new(),
            publisher: Mutex::new(None),
            epoch: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            recorder,
            ingest: Mutex::new(IngestStats::default()),
            encoding: Arc::default(),
        }
    }

    pub fn attach(&self, conn: u64) -> Result<(), AttachError> {
        let mut p = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
        if self.ended.load(Ordering::SeqCst) {
            return Err(AttachError::Ended);
        }
        if p.is_some() {
            return Err(AttachError::Busy);
        }
        *p = Some(conn);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The publisher `conn` left; returns the epoch a grace timer must see unchanged.
    pub fn leave(&self, conn: u64) -> Option<u64> {
        let mut p = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
        if *p != Some(conn) {
            return None;
        }
        *p = None;
        Some(self.epoch.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Ends the broadcast if nobody attached since `epoch`. True if it ended now.
    pub fn end_if_still(&self, epoch: u64) -> bool {
        let p = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_some() || self.epoch.load(Ordering::SeqCst) != epoch || self.ended.swap(true, Ordering::SeqCst) {
            return false;
        }
        drop(p);
        for r in self.renditions() {
            r.finish();
        }
        true
    }

    pub fn is_publishing(&self) -> bool {
        self.publisher.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// The encoder's outputs and their renditions, decided by the first
    /// publish (later ones keep them: players already hold the master).
    pub fn outputs(&self, settings: &Settings, source_height: Option<u32>, audio: bool) -> (Vec<Output>, Vec<Arc<Rendition>>) {
        let outputs = self.outputs.get_or_init(|| {
            let mut o: Vec<Output> = settings.ladder.for_source(source_height).into_iter().map(Output::Video).collect();
            if audio {
                o.push(Output::Audio { kbps: settings.encoder.audio_kbps });
            }
            o
        });
        let renditions = self.renditions.get_or_init(|| {
            let shape = settings.packaging.shape();
            outputs
                .iter()
                .map(|o| {
                    let kind = match o {
                        Output::Video(r) => Kind::Video { height: r.height, kbps: r.video_kbps },
                        Output::Audio { kbps } => Kind::Audio { kbps: *kbps },
                    };
                    Arc::new(Rendition::new(o.name(), kind, shape.clone(), settings.packaging.memory_segments, self.recorder.clone()))
                })
                .collect()
        });
        (outputs.clone(), renditions.clone())
    }

    pub fn renditions(&self) -> &[Arc<Rendition>] {
        self.renditions.get().map_or(&[], Vec::as_slice)
    }

    pub fn rendition(&self, name: &str) -> Option<&Arc<Rendition>> {
        self.renditions().iter().find(|r| r.name == name)
    }
}
