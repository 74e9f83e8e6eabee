//! One rendition's encoder output (fragmented MP4, as ffmpeg writes it to a
//! pipe) turned into LL-HLS objects: the init segment, each fragment as a
//! part, and each segment (its parts' bytes, concatenated: a CMAF segment is
//! its fragments) once the timeline closes it.
//!
//! ffmpeg cuts the fragments (`-frag_duration` at most the part target, a
//! new fragment at every key frame); a part is one fragment or several
//! (chunks: ffmpeg writes a fragment only once it is complete, so a part of
//! two fragments can be served half-written). A part closes as soon as the
//! next fragment, as long as the last one, would not fit the part target,
//! or when a key frame begins the next fragment. Its place is fixed when
//! its first fragment comes ([`Timeline::position`]), so each fragment of
//! an open part is output as a [`Output::Chunk`] under the part's name;
//! [`Timeline::push`] decides at its close which parts begin a
//! segment. Program date-times come from the
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
    /// A fragment of part `(msn, index)`, which is still open: its bytes so far grow by these.
    Chunk { msn: u64, index: u32, bytes: Vec<u8> },
    /// A complete part: all its bytes (its chunks', if it had any, and the last fragment's).
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
    /// The part being written, fragment by fragment.
    open: Option<OpenPart>,
}

/// A part whose fragments are still coming.
#[derive(Debug)]
struct OpenPart {
    msn: u64,
    index: u32,
    independent: bool,
    /// Program date-time of its first frame.
    at: SystemTime,
    duration: Duration,
    /// The newest fragment's duration: the next one is expected as long.
    last: Duration,
    bytes: Vec<u8>,
}

impl Packager {
    /// `max_box`: the largest box accepted from the encoder (memory bound).
    pub fn new(shape: Shape, max_box: usize) -> Self {
        Self { splitter: Splitter::new(max_box), max_box, timeline: Timeline::new(shape), ftyp: None, init: None, moof: None, anchor: None, segment: None, open: None }
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
            // What it wrote of the open part is a (short) part: viewers may be reading it.
            let _ = self.close_part(&mut out);
            self.close_segment(&mut out);
            self.timeline.restart_media();
            self.anchor = None;
        }
        out
    }

    /// The encoder stopped for good: the open segment closes and the playlist ends.
    pub fn finish(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        let _ = self.close_part(&mut out);
        self.timeline.end();
        self.close_segment(&mut out);
        out
    }

    fn top_box(&mut self, b: TopBox, now: SystemTime, out: &mut Vec<Output>) -> anyhow::Result<()> {
        match &b.kind {
            b"ftyp" => self.ftyp = Some(b.bytes),
            b"moov" => {
                let ftyp = self.ftyp.take().context("a moov without an ftyp before it")?;
                let info = init_info(&b.bytes)?;
                if self.init.is_some() {
                    // A restarted encoder: its media does not continue the old one's.
                    self.close_part(out)?;
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
        let duration = ticks(f.duration);
        let target = self.timeline.shape().part_target;
        // A key frame begins a part; so does a fragment the open part has no room for.
        if self.open.as_ref().is_some_and(|o| f.independent || o.duration + duration > target) {
            self.close_part(out)?;
        }
        match &mut self.open {
            Some(open) => {
                open.bytes.extend_from_slice(&bytes);
                open.duration += duration;
                open.last = duration;
            }
            None => {
                // The first fragment's first frame was captured a fragment's duration before it was complete.
                let (dt0, wall0) = *self.anchor.get_or_insert((f.decode_time, now.checked_sub(duration).unwrap_or(now)));
                let at = wall0 + ticks(f.decode_time.saturating_sub(dt0));
                let (msn, index) = self.timeline.position(f.independent);
                self.open = Some(OpenPart { msn, index, independent: f.independent, at, duration, last: duration, bytes: bytes.clone() });
            }
        }
        let open = self.open.as_ref().expect("opened above");
        // Within a millisecond, as durations summed from ticks are rounded.
        if open.duration + open.last > target + Duration::from_millis(1) {
            self.close_part(out)?;
        } else {
            out.push(Output::Chunk { msn: open.msn, index: open.index, bytes });
        }
        Ok(())
    }

    fn close_part(&mut self, out: &mut Vec<Output>) -> anyhow::Result<()> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let (msn, index) = self.timeline.push(Part { duration: open.duration, independent: open.independent }, open.at)?;
        // (msn, index) is where `position` said (tested in the timeline); had
        // it not been, the rendition drops the chunks served under the other name.
        if self.segment.as_ref().is_some_and(|(s, _)| *s != msn) {
            self.close_segment(out);
        }
        self.segment.get_or_insert_with(|| (msn, Vec::new())).1.extend_from_slice(&open.bytes);
        out.push(Output::Part { msn, index, independent: open.independent, bytes: open.bytes });
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
    fn fragments_shorter_than_a_part_are_chunks_of_it_named_before_it_closes() {
        let mut p = Packager::new(shape(), 1 << 20);
        let mut s = init(15_360);
        // Fragments of five frames (a sixth of a second), a key frame every second.
        for i in 0..12u64 {
            s.extend(frag(i * 2560, 5, i % 6 == 0));
        }
        let out = p.feed(&s, SystemTime::UNIX_EPOCH).unwrap();
        let names: Vec<String> = out[1..].iter().map(|o| match o {
            Output::Chunk { msn, index, .. } => format!("c{msn}.{index}"),
            Output::Part { msn, index, .. } => format!("p{msn}.{index}"),
            other => format!("{other:?}"),
        }).collect();
        assert_eq!(names, ["c0.0", "c0.0", "p0.0", "c0.1", "c0.1", "p0.1", "c0.2", "c0.2", "p0.2", "c0.3", "c0.3", "p0.3"]);
        // A part is its fragments; its chunks were the first of them.
        let part = |i: usize| match &out[i] { Output::Part { bytes, .. } | Output::Chunk { bytes, .. } => bytes.clone(), o => panic!("{o:?}") };
        assert_eq!(part(3), [frag(0, 5, true), frag(2560, 5, false), frag(5120, 5, false)].concat());
        assert_eq!([part(1), part(2)].concat(), [frag(0, 5, true), frag(2560, 5, false)].concat());
        assert_eq!(p.timeline().last_part(), Some((0, 3)));
        // Ending closes what was written of an open part.
        p.feed(&frag(12 * 2560, 5, true), SystemTime::UNIX_EPOCH).unwrap();
        let end = p.finish();
        assert!(matches!(&end[..], [Output::Segment { msn: 0, .. }, Output::Part { msn: 1, index: 0, .. }, Output::Segment { msn: 1, .. }]), "{end:?}");
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
