//! One rendition of a broadcast: its packager, the objects viewers fetch
//! from memory (every init segment, the parts still listed and the chunks
//! of the one being written, the newest segments), a change signal blocking requests wait on, and the hand-off
//! of every complete segment and init segment to the DVR recorder.
//!
//! Memory is bounded: parts older than the segments kept are dropped, and
//! only `memory_segments` segments stay; older ones are served from S3.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::llhls::names::Object;
use media::llhls::packager::{Output, Packager};
use media::llhls::render::{media_playlist, RenditionReport};
use media::llhls::request::Want;
use media::llhls::timeline::{Availability, Shape};
use tokio::sync::watch;

use crate::dvr::Recorder;

/// The largest box accepted from the encoder: a 2 s segment's fragment at
/// the top rung's rate is far below it.
const MAX_BOX: usize = 32 << 20;

/// What a rendition is, for the master playlist.
#[derive(Debug, Clone)]
pub enum Kind {
    Video { height: u32, kbps: u32 },
    Audio { kbps: u32 },
}

pub struct Rendition {
    pub name: String,
    pub kind: Kind,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    recorder: Recorder,
}

struct Inner {
    packager: Packager,
    generation: u32,
    inits: HashMap<u32, Bytes>,
    parts: BTreeMap<(u64, u32), Bytes>,
    /// The part being written (the preload hint's, usually) and its chunks so far.
    open: Option<((u64, u32), Vec<Bytes>)>,
    segments: BTreeMap<u64, Bytes>,
    memory_segments: usize,
    /// From the first init's sample entry (`avc1.64001f`, `mp4a.40.2`).
    codecs: Option<String>,
    /// Width × height of the newest init (video).
    size: Option<(u32, u32)>,
    /// Bits per second: the largest segment so far, and all segments' mean.
    peak_bps: u64,
    total_bits: u64,
    total_time: Duration,
}

/// Where a part request stands.
pub enum PartLookup {
    Here(Bytes),
    /// Being written: its chunks so far (at least one).
    Writing(Vec<Bytes>),
    /// Not written yet, but the next few parts: wait for it.
    Soon,
    Gone,
}

impl Rendition {
    pub fn new(name: &str, kind: Kind, shape: Shape, memory_segments: usize, recorder: Recorder) -> Self {
        let inner = Inner {
            packager: Packager::new(shape, MAX_BOX),
            generation: 0,
            inits: HashMap::new(),
            parts: BTreeMap::new(),
            open: None,
            segments: BTreeMap::new(),
            memory_segments,
            codecs: None,
            size: None,
            peak_bps: 0,
            total_bits: 0,
            total_time: Duration::ZERO,
        };
        Self { name: name.to_owned(), kind, inner: Mutex::new(inner), changed: watch::channel(0).0, recorder }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it must not take every viewer down.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encoder bytes read at `now`. Every output wakes the waiters: a
    /// chunk of the open part too, for those streaming it. An error: this encoder's output cannot
    /// be packaged further (the caller restarts the encoder).
    pub fn ingest(&self, bytes: &[u8], now: SystemTime) -> anyhow::Result<()> {
        let mut g = self.lock();
        let outputs = g.packager.feed(bytes, now)?;
        let any = !outputs.is_empty();
        self.apply(&mut g, outputs);
        drop(g);
        if any {
            self.changed.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// The encoder died; a new one follows after a discontinuity.
    pub fn restart(&self) {
        let mut g = self.lock();
        let out = g.packager.restart();
        self.apply(&mut g, out);
        drop(g);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The broadcast is over: the playlist ends.
    pub fn finish(&self) {
        let mut g = self.lock();
        let out = g.packager.finish();
        self.apply(&mut g, out);
        drop(g);
        self.changed.send_modify(|v| *v += 1);
    }

    fn apply(&self, g: &mut Inner, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Init { generation, bytes } => {
                    let bytes = Bytes::from(bytes);
                    if g.codecs.is_none() {
                        g.codecs = codecs_of(&bytes);
                    }
                    if let Some(size) = size_of(&bytes) {
                        g.size = Some(size);
                    }
                    g.generation = generation;
                    self.recorder.init(&self.name, generation, bytes.clone());
                    g.inits.insert(generation, bytes);
                }
                Output::Chunk { msn, index, bytes } => match &mut g.open {
                    Some((key, chunks)) if *key == (msn, index) => chunks.push(Bytes::from(bytes)),
                    open => *open = Some(((msn, index), vec![Bytes::from(bytes)])),
                },
                Output::Part { msn, index, bytes, .. } => {
                    // The packager writes one part at a time: this closes the open one.
                    g.open = None;
                    g.parts.insert((msn, index), Bytes::from(bytes));
                }
                Output::Segment { msn, bytes } => {
                    let bytes = Bytes::from(bytes);
                    if let Some(s) = g.packager.timeline().segments().find(|s| s.msn == msn) {
                        let d = s.duration();
                        let bits = bytes.len() as u64 * 8;
                        g.peak_bps = g.peak_bps.max((bits as f64 / d.as_secs_f64().max(0.001)) as u64);
                        g.total_bits += bits;
                        g.total_time += d;
                    }
                    self.recorder.segment(&self.name, msn, g.generation, bytes.clone());
                    g.segments.insert(msn, bytes);
                    while g.segments.len() > g.memory_segments {
                        g.segments.pop_first();
                    }
                    // Parts are listed for the last three target durations; keep a few segments' worth.
                    let oldest = msn.saturating_sub(4);
                    while g.parts.first_key_value().is_some_and(|((m, _), _)| *m < oldest) {
                        g.parts.pop_first();
                    }
                }
            }
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn availability(&self, want: Want) -> Availability {
        self.lock().packager.timeline().availability(want)
    }

    pub fn target_duration(&self) -> u64 {
        self.lock().packager.timeline().shape().target_duration()
    }

    /// The media playlist, with the other renditions' reports.
    pub fn playlist(&self, skip: bool, reports: &[RenditionReport]) -> String {
        media_playlist(self.lock().packager.timeline(), skip, reports)
    }

    /// This rendition's report, as seen from a sibling's playlist.
    pub fn report(&self) -> Option<RenditionReport> {
        let (last_msn, last_part) = self.lock().packager.timeline().last_part()?;
        Some(RenditionReport { uri: format!("../{}/{}", self.name, Object::Playlist), last_msn, last_part })
    }

    pub fn has_segment(&self) -> bool {
        self.lock().packager.timeline().last_segment().is_some()
    }

    pub fn has_media(&self) -> bool {
        !self.lock().inits.is_empty()
    }

    pub fn init(&self, generation: u32) -> Option<Bytes> {
        self.lock().inits.get(&generation).cloned()
    }

    /// A segment from memory; `None` when it is not (or no longer) here.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.lock().segments.get(&msn).cloned()
    }

    pub fn part(&self, msn: u64, index: u32) -> PartLookup {
        let g = self.lock();
        if let Some(b) = g.parts.get(&(msn, index)) {
            return PartLookup::Here(b.clone());
        }
        if let Some((_, chunks)) = g.open.as_ref().filter(|(key, _)| *key == (msn, index)) {
            return PartLookup::Writing(chunks.clone());
        }
        let timeline = g.packager.timeline();
        if timeline.ended() {
            return PartLookup::Gone;
        }
        match timeline.availability(Want { msn, part: Some(index) }) {
            Availability::Wait => PartLookup::Soon,
            _ => PartLookup::Gone,
        }
    }

    /// For the master playlist: codecs, size, peak and mean bits per second.
    pub fn facts(&self) -> (Option<String>, Option<(u32, u32)>, u64, u64) {
        let g = self.lock();
        let mean = if g.total_time.is_zero() { 0 } else { (g.total_bits as f64 / g.total_time.as_secs_f64()) as u64 };
        (g.codecs.clone(), g.size, g.peak_bps, mean)
    }
}

/// RFC 6381 codec string of an init segment: `avc1.PPCCLL` from its avcC
/// record, `mp4a.40.2` for AAC-LC (what the ladder's encoder writes).
pub fn codecs_of(init: &[u8]) -> Option<String> {
    if let Some(i) = find(init, b"avcC") {
        let rec = init.get(i + 4..i + 8)?;
        return Some(format!("avc1.{:02x}{:02x}{:02x}", rec[1], rec[2], rec[3]));
    }
    find(init, b"mp4a").map(|_| "mp4a.40.2".to_owned())
}

/// Width and height of the video track: the `tkhd` box's last 8 bytes (16.16 fixed point).
fn size_of(init: &[u8]) -> Option<(u32, u32)> {
    find(init, b"avc1")?;
    let i = find(init, b"tkhd")?;
    let start = i.checked_sub(4)?;
    let size = u32::from_be_bytes(init.get(start..i)?.try_into().ok()?) as usize;
    let end = start.checked_add(size)?;
    if size < 8 + 8 {
        return None;
    }
    let w = u32::from_be_bytes(init.get(end - 8..end - 4)?.try_into().ok()?) >> 16;
    let h = u32::from_be_bytes(init.get(end - 4..end)?.try_into().ok()?) >> 16;
    (w > 0 && h > 0).then_some((w, h))
}

fn find(hay: &[u8], needle: &[u8; 4]) -> Option<usize> {
    hay.windows(4).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_strings_come_from_the_init_segment() {
        let mut init = b"....avcC\x01\x64\x00\x1f\xff".to_vec();
        assert_eq!(codecs_of(&init).as_deref(), Some("avc1.64001f"));
        init = b"....mp4a....esds".to_vec();
        assert_eq!(codecs_of(&init).as_deref(), Some("mp4a.40.2"));
        assert_eq!(codecs_of(b"nothing"), None);
    }
}
