//! One rendition's encoder output (fragmented MP4, as ffmpeg writes it to a
//! pipe) turned into LL-HLS objects: the init segment, each fragment as a
//! part, and each segment (its parts' bytes, concatenated: a CMAF segment is
//! its fragments) once the timeline closes it.
//!
//! ffmpeg cuts the fragments (`-frag_duration` at most the part target, a
//! new fragment at every key frame); this decides which of them begin a
//! segment, through [`Timeline::push`]. Program date-times come from the
//! ingest clock: the wall time the caller gives with the first fragment,
//! less that fragment's duration (it was captured that long before it was
//! complete), advanced by media time after it, so the clock of the
//! packaging machine never makes parts jitter.
//!
//! A restarted encoder (the caller's [`Packager::restart`], or a new init
//! segment in the stream) is a discontinuity with a new init generation.

use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::timeline::{Part, Shape, Timeline};
use crate::isobmff::{fragment, init_info, split::TopBox, Fragment, InitInfo, Splitter};

/// What the packager produced from the bytes fed to it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The init segment (`ftyp` + `moov`), `init-{generation}.mp4`: again after an encoder restart.
    Init { generation: u32, bytes: Vec<u8> },
    Part { msn: u64, index: u32, independent: bool, bytes: Vec<u8> },
    /// A segment the timeline closed: its parts' bytes.
    Segment { msn: u64, bytes: Vec<u8> },
}

/// Packages one rendition.
#[derive(Debug)]
pub struct Packager {
    splitter: Splitter,
    max_box: usize,
    timeline: Timeline,
    /// `ftyp` waiting for its `moov`.
    ftyp: Option<Vec<u8>>,
    init: Option<InitInfo>,
    moof: Option<(Vec<u8>, Fragment)>,
    /// Decode time and wall time of the first fragment since the last init.
    anchor: Option<(u64, SystemTime)>,
    /// The open segment's msn and bytes so far.
    segment: Option<(u64, Vec<u8>)>,
}

impl Packager {
    /// `max_box`: the largest box accepted from the encoder (memory bound).
    pub fn new(shape: Shape, max_box: usize) -> Self {
        Self { splitter: Splitter::new(max_box), max_box, timeline: Timeline::new(shape), ftyp: None, init: None, moof: None, anchor: None, segment: None }
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Feeds encoder bytes read at `now`; returns what became complete.
    /// An error means the stream cannot be packaged further (the caller
    /// restarts the encoder, which starts with a new init segment).
    pub fn feed(&mut self, bytes: &[u8], now: SystemTime) -> anyhow::Result<Vec<Output>> {
        self.splitter.push(bytes);
        let mut out = Vec::new();
        while let Some(b) = self.splitter.next_box()? {
            self.top_box(b, now, &mut out)?;
        }
        Ok(out)
    }

    /// The encoder died and a new one will write from its own start: what the
    /// old one left half-written is dropped, the open segment closes, and the
    /// new one's media follows a discontinuity. Returns what closed.
    pub fn restart(&mut self) -> Vec<Output> {
        self.splitter = Splitter::new(self.max_box);
        self.ftyp = None;
        self.moof = None;
        let mut out = Vec::new();
        if self.init.take().is_some() {
            self.close_segment(&mut out);
            self.timeline.restart_media();
            self.anchor = None;
        }
        out
    }

    /// The encoder stopped for good: the open segment closes and the playlist ends.
    pub fn finish(&mut self) -> Vec<Output> {
        self.timeline.end();
        self.segment.take().map(|(msn, bytes)| Output::Segment { msn, bytes }).into_iter().collect()
    }

    fn top_box(&mut self, b: TopBox, now: SystemTime, out: &mut Vec<Output>) -> anyhow::Result<()> {
        match &b.kind {
            b"ftyp" => self.ftyp = Some(b.bytes),
            b"moov" => {
                let ftyp = self.ftyp.take().context("a moov without an ftyp before it")?;
                let info = init_info(&b.bytes)?;
                if self.init.is_some() {
                    // A restarted encoder: its media does not continue the old one's.
                    self.close_segment(out);
                    self.timeline.restart_media();
                    self.anchor = None;
                }
                self.init = Some(info);
                out.push(Output::Init { generation: self.timeline.generation(), bytes: [ftyp, b.bytes].concat() });
            }
            b"moof" => {
                let init = self.init.as_ref().context("a fragment before the init segment")?;
                let f = fragment(&b.bytes, init)?;
                self.moof = Some((b.bytes, f));
            }
            b"mdat" => {
                let (moof, f) = self.moof.take().context("an mdat without a moof before it")?;
                self.part([moof, b.bytes].concat(), f, now, out)?;
            }
            // styp, sidx, free, emsg…: nothing a part needs.
            _ => {}
        }
        Ok(())
    }

    fn part(&mut self, bytes: Vec<u8>, f: Fragment, now: SystemTime, out: &mut Vec<Output>) -> anyhow::Result<()> {
        let ts = self.init.as_ref().expect("checked at the moof").timescale as u128;
        let ticks = |t: u64| Duration::from_nanos(u64::try_from(t as u128 * 1_000_000_000 / ts).unwrap_or(u64::MAX));
        // The first fragment's first frame was captured a fragment's duration before it was complete.
        let (dt0, wall0) = *self.anchor.get_or_insert((f.decode_time, now.checked_sub(ticks(f.duration)).unwrap_or(now)));
        let at = wall0 + ticks(f.decode_time.saturating_sub(dt0));
        let (msn, index) = self.timeline.push(Part { duration: ticks(f.duration), independent: f.independent }, at)?;
        if self.segment.as_ref().is_some_and(|(open, _)| *open != msn) {
            self.close_segment(out);
        }
        self.segment.get_or_insert_with(|| (msn, Vec::new())).1.extend_from_slice(&bytes);
        out.push(Output::Part { msn, index, independent: f.independent, bytes });
        Ok(())
    }

    fn close_segment(&mut self, out: &mut Vec<Output>) {
        if let Some((msn, bytes)) = self.segment.take() {
            out.push(Output::Segment { msn, bytes });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isobmff::testing::{bx, full};

    fn be(v: u32) -> [u8; 4] {
        v.to_be_bytes()
    }

    fn init(timescale: u32) -> Vec<u8> {
        let mdhd = full(b"mdhd", 0, 0, &[&be(0), &be(0), &be(timescale), &be(0), &[0; 4]]);
        [bx(b"ftyp", b"iso6"), bx(b"moov", &bx(b"trak", &bx(b"mdia", &mdhd)))].concat()
    }

    /// A fragment of `frames` frames of 512 ticks (30 fps at 15360) starting at `dt`.
    fn frag(dt: u64, frames: u32, key: bool) -> Vec<u8> {
        let tfhd = full(b"tfhd", 0, 0x08 | 0x20, &[&be(1), &be(512), &be(0x0001_0000)]);
        let tfdt = full(b"tfdt", 1, 0, &[&dt.to_be_bytes()]);
        let first = if key { 0x0200_0000 } else { 0x0101_0000 };
        let trun = full(b"trun", 0, 0x04, &[&be(frames), &be(first)]);
        [bx(b"moof", &bx(b"traf", &[tfhd, tfdt, trun].concat())), bx(b"mdat", &[0; 16])].concat()
    }

    fn shape() -> Shape {
        Shape { part_target: Duration::from_millis(500), segment_target: Duration::from_secs(2), window: Duration::from_secs(60) }
    }

    /// Ten half-second fragments, a key frame every second.
    fn stream() -> Vec<u8> {
        let mut s = init(15_360);
        for i in 0..10u64 {
            s.extend(frag(i * 7680, 15, i % 2 == 0));
        }
        s
    }

    #[test]
    fn fragments_become_parts_and_closed_segments_their_concatenation() {
        let mut p = Packager::new(shape(), 1 << 20);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let out = p.feed(&stream(), t0).unwrap();
        assert!(matches!(&out[0], Output::Init { generation: 0, bytes } if bytes.starts_with(&bx(b"ftyp", b"iso6"))));
        let parts: Vec<(u64, u32, bool)> = out.iter().filter_map(|o| match o {
            Output::Part { msn, index, independent, .. } => Some((*msn, *index, *independent)),
            _ => None,
        }).collect();
        assert_eq!(parts[..5], [(0, 0, true), (0, 1, false), (0, 2, true), (0, 3, false), (1, 0, true)]);
        let segments: Vec<u64> = out.iter().filter_map(|o| if let Output::Segment { msn, .. } = o { Some(*msn) } else { None }).collect();
        assert_eq!(segments, [0, 1]);
        // Segment 0 is its four parts, in order.
        let seg0 = out.iter().find_map(|o| if let Output::Segment { msn: 0, bytes } = o { Some(bytes.clone()) } else { None }).unwrap();
        let parts0: Vec<u8> = out.iter().filter_map(|o| if let Output::Part { msn: 0, bytes, .. } = o { Some(bytes.clone()) } else { None }).flatten().collect();
        assert_eq!(seg0, parts0);
        // Program date-times follow media time from the first fragment's capture (its arrival less its length).
        let pdts: Vec<SystemTime> = p.timeline().segments().map(|s| s.program_date_time).collect();
        let start = t0 - Duration::from_millis(500);
        assert_eq!(pdts, [start, start + Duration::from_secs(2)]);
        assert_eq!(p.finish(), vec![Output::Segment { msn: 2, bytes: [frag(8 * 7680, 15, true), frag(9 * 7680, 15, false)].concat() }]);
        assert!(p.timeline().ended());
    }

    #[test]
    fn bytes_may_arrive_in_any_reads() {
        let s = stream();
        let mut whole = Packager::new(shape(), 1 << 20);
        let expected = whole.feed(&s, SystemTime::UNIX_EPOCH).unwrap();
        let mut p = Packager::new(shape(), 1 << 20);
        let mut got = Vec::new();
        for chunk in s.chunks(7) {
            got.extend(p.feed(chunk, SystemTime::UNIX_EPOCH).unwrap());
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_new_init_segment_is_a_discontinuity() {
        let mut p = Packager::new(shape(), 1 << 20);
        p.feed(&stream(), SystemTime::UNIX_EPOCH).unwrap();
        // The encoder restarts: a new init, media time from zero again.
        let out = p.feed(&[init(15_360), frag(0, 15, true)].concat(), SystemTime::UNIX_EPOCH).unwrap();
        assert!(matches!(out[0], Output::Segment { msn: 2, .. }), "the open segment closes first: {out:?}");
        assert!(matches!(out[1], Output::Init { generation: 1, .. }));
        assert!(matches!(out[2], Output::Part { msn: 3, index: 0, .. }));
        assert!(p.timeline().open().unwrap().discontinuity);
        assert_eq!(p.timeline().open().unwrap().init, 1);
    }

    #[test]
    fn a_restart_drops_the_half_written_box_of_the_dead_encoder() {
        let mut p = Packager::new(shape(), 1 << 20);
        let s = stream();
        p.feed(&s[..s.len() - 10], SystemTime::UNIX_EPOCH).unwrap(); // killed mid-mdat
        let closed = p.restart();
        assert!(matches!(closed[..], [Output::Segment { msn: 2, .. }]), "{closed:?}");
        let out = p.feed(&[init(15_360), frag(0, 15, true)].concat(), SystemTime::UNIX_EPOCH).unwrap();
        assert!(matches!(out[0], Output::Init { generation: 1, .. }), "{out:?}");
        assert!(matches!(out[1], Output::Part { msn: 3, index: 0, .. }));
    }

    #[test]
    fn out_of_order_boxes_are_errors() {
        let mut p = Packager::new(shape(), 1 << 20);
        assert!(p.feed(&frag(0, 15, true), SystemTime::UNIX_EPOCH).unwrap_err().to_string().contains("before the init"));
        let mut p = Packager::new(shape(), 1 << 20);
        let mut s = init(15_360);
        s.extend(bx(b"mdat", &[0; 4]));
        assert!(p.feed(&s, SystemTime::UNIX_EPOCH).unwrap_err().to_string().contains("without a moof"));
        // A fragment longer than the part target is refused by the timeline.
        let mut p = Packager::new(shape(), 1 << 20);
        let mut s = init(15_360);
        s.extend(frag(0, 16, true));
        assert!(p.feed(&s, SystemTime::UNIX_EPOCH).unwrap_err().to_string().contains("longer than the part target"));
    }
}
