//! One rendition's live timeline: the segments inside the DVR window, the
//! segment being written and its parts so far, and where a blocking request
//! stands against it (RFC 8216bis §6.2.5.2).
//!
//! The packager pushes each part as it is cut from the encoder's fragments;
//! a part that starts with a key frame (independent) and comes once the
//! open segment has reached the segment target begins the next segment, so
//! every segment starts on a key frame and the target duration holds. It is
//! sans-IO: no clock (the packager stamps program date-times from the
//! ingest clock) and no waiting (the origin waits, on what
//! [`Timeline::availability`] says).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::request::Want;

/// The shape of a rendition's timeline, fixed for its life: players rely on
/// the target durations never changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The longest a part may be (PART-TARGET).
    pub part_target: Duration,
    /// Segments are cut at the first key frame at or after this.
    pub segment_target: Duration,
    /// How much of the past stays listed (DVR).
    pub window: Duration,
}

impl Shape {
    /// EXT-X-TARGETDURATION: whole seconds, never below a segment's rounded duration.
    /// Whether an open segment of `d` is long enough to close at the next
    /// key frame. Within a millisecond: parts are summed from durations
    /// rounded to the nanosecond, so six parts of ten frames at 30 fps come
    /// to 1.999999998 s, and an exact comparison closed the segment a key
    /// frame later (3 s segments for a 2 s target).
    pub fn reached(&self, d: Duration) -> bool {
        d + Duration::from_millis(1) >= self.segment_target
    }

    pub fn target_duration(&self) -> u64 {
        // The segment target plus one part's overshoot, rounded up: a
        // segment closes at the first key frame at or after the target.
        (self.segment_target + self.part_target).as_secs_f64().ceil() as u64
    }

    /// The Advance Part Limit: how far past the last part a request may ask.
    pub fn advance_part_limit(&self) -> u64 {
        let pt = self.part_target.as_secs_f64();
        if pt < 1.0 {
            (3.0 / pt).ceil() as u64
        } else {
            3
        }
    }

    fn parts_per_segment(&self) -> u64 {
        (self.segment_target.as_secs_f64() / self.part_target.as_secs_f64()).ceil().max(1.0) as u64
    }
}

/// One part as the packager cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub duration: Duration,
    /// Starts with a key frame: a player may start decoding here.
    pub independent: bool,
}

/// A segment of the timeline: closed ones have all their parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub msn: u64,
    /// When its first frame was captured, by the ingest clock.
    pub program_date_time: SystemTime,
    /// Media before it does not continue into it (a reconnected publisher, a restarted encoder).
    pub discontinuity: bool,
    /// The generation of the init segment it needs (`init-{generation}.mp4`).
    pub init: u32,
    pub parts: Vec<Part>,
}

impl Segment {
    pub fn duration(&self) -> Duration {
        self.parts.iter().map(|p| p.duration).sum()
    }
}

/// Where the timeline stands against a blocking request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// The playlist already holds it: answer now.
    Ready,
    /// Not yet: wait for the next part (bounded by the caller).
    Wait,
    /// Further ahead than a client may ask (400 Bad Request).
    TooFar,
}

/// A part the packager pushed that the timeline cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// Longer than PART-TARGET, or of no length at all.
    PartTooLong { duration: Duration, part_target: Duration },
    EmptyPart,
    /// A part inside a segment, not its last, shorter than 85 % of PART-TARGET (§4.4.4.9).
    PartTooShort { msn: u64, index: u32, duration: Duration },
    /// The first part of a segment must start with a key frame.
    NotIndependent { msn: u64 },
    /// The open segment would outgrow EXT-X-TARGETDURATION: the encoder's key frames are too far apart.
    SegmentTooLong { msn: u64, duration: Duration, target_duration: u64 },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PartTooLong { duration, part_target } => write!(f, "a part of {duration:?} is longer than the part target {part_target:?}"),
            Self::EmptyPart => write!(f, "a part of no duration"),
            Self::PartTooShort { msn, index, duration } => write!(f, "part {index} of segment {msn} lasts {duration:?}, under 85 % of the part target, and is not the segment's last"),
            Self::NotIndependent { msn } => write!(f, "segment {msn} would start without a key frame"),
            Self::SegmentTooLong { msn, duration, target_duration } => {
                write!(f, "segment {msn} would last {duration:?}, over the target duration of {target_duration} s (key frames too far apart)")
            }
        }
    }
}

impl std::error::Error for PushError {}

/// The timeline of one rendition. Closed segments older than the window are dropped.
#[derive(Debug, Clone)]
pub struct Timeline {
    shape: Shape,
    closed: VecDeque<Segment>,
    open: Option<Segment>,
    next_msn: u64,
    /// Discontinuities that have left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    /// The next segment starts after a break.
    break_pending: bool,
    /// The init segment generation new segments need.
    generation: u32,
    ended: bool,
}

impl Timeline {
    pub fn new(shape: Shape) -> Self {
        Self { shape, closed: VecDeque::new(), open: None, next_msn: 0, discontinuity_sequence: 0, break_pending: false, generation: 0, ended: false }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Adds a part cut at `at` (the ingest clock's time of its first frame).
    /// Returns the (msn, part index) it got.
    pub fn push(&mut self, part: Part, at: SystemTime) -> Result<(u64, u32), PushError> {
        if part.duration.is_zero() {
            return Err(PushError::EmptyPart);
        }
        if part.duration > self.shape.part_target {
            return Err(PushError::PartTooLong { duration: part.duration, part_target: self.shape.part_target });
        }
        let cut = self.cuts(part.independent);
        // The part before this one turns out not to be its segment's last:
        // it must have been at least 85 % of the target (independent parts excepted).
        if let (false, Some(open)) = (cut, &self.open) {
            if let Some(last) = open.parts.last().filter(|p| !p.independent && p.duration.as_secs_f64() < 0.85 * self.shape.part_target.as_secs_f64()) {
                return Err(PushError::PartTooShort { msn: open.msn, index: open.parts.len() as u32 - 1, duration: last.duration });
            }
        }
        if cut {
            if !part.independent {
                return Err(PushError::NotIndependent { msn: self.next_msn });
            }
            self.close();
            let discontinuity = std::mem::take(&mut self.break_pending) && (self.next_msn > 0);
            self.open = Some(Segment { msn: self.next_msn, program_date_time: at, discontinuity, init: self.generation, parts: Vec::new() });
            self.next_msn += 1;
        }
        let open = self.open.as_mut().expect("a segment is open after a cut");
        let duration = open.duration() + part.duration;
        if duration.as_secs_f64().round() as u64 > self.shape.target_duration() {
            return Err(PushError::SegmentTooLong { msn: open.msn, duration, target_duration: self.shape.target_duration() });
        }
        open.parts.push(part);
        Ok((open.msn, open.parts.len() as u32 - 1))
    }

    /// The media that follows does not continue what came before (a
    /// publisher reconnected, the encoder restarted): the open segment is
    /// closed and the next one is marked EXT-X-DISCONTINUITY.
    pub fn discontinue(&mut self) {
        self.close();
        self.break_pending = true;
    }

    /// The encoder restarted with a new init segment: a discontinuity, and
    /// the segments after it need the next init generation. Returns it.
    pub fn restart_media(&mut self) -> u32 {
        self.discontinue();
        self.generation += 1;
        self.generation
    }

    /// The init generation the next segment needs.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The stream is over: the open segment closes and the playlist ends (EXT-X-ENDLIST).
    pub fn end(&mut self) {
        self.close();
        self.ended = true;
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            if !open.parts.is_empty() {
                self.closed.push_back(open);
            }
        }
        self.trim();
    }

    /// Drops closed segments that left the window, keeping at least three
    /// and at least three target durations (a playlist MUST NOT be shorter,
    /// §6.2.2), counting the discontinuities that leave.
    fn trim(&mut self) {
        let keep = self.shape.window.max(Duration::from_secs(3 * self.shape.target_duration()));
        let mut total: Duration = self.closed.iter().map(Segment::duration).sum();
        while self.closed.len() > 3 {
            let first = self.closed.front().expect("more than three segments").duration();
            if total - first < keep {
                break;
            }
            self.closed.pop_front();
            total -= first;
            if self.closed.front().is_some_and(|s| s.discontinuity) {
                // A break before the first segment listed is carried by the
                // sequence number instead of a tag: the tag goes, the count
                // goes up (§4.4.3.3), and players see the same numbering.
                self.discontinuity_sequence += 1;
                self.closed.front_mut().expect("checked").discontinuity = false;
            }
        }
    }

    /// Closed segments in the window, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.closed.iter()
    }

    /// The segment being written, if it has parts.
    pub fn open(&self) -> Option<&Segment> {
        self.open.as_ref().filter(|s| !s.parts.is_empty())
    }

    /// EXT-X-MEDIA-SEQUENCE: the first segment listed (closed or open).
    pub fn media_sequence(&self) -> u64 {
        self.closed.front().or(self.open.as_ref()).map_or(self.next_msn, |s| s.msn)
    }

    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// The last complete segment's msn.
    pub fn last_segment(&self) -> Option<u64> {
        self.closed.back().map(|s| s.msn)
    }

    /// The last part listed: (msn, index).
    pub fn last_part(&self) -> Option<(u64, u32)> {
        self.open()
            .or(self.closed.back())
            .map(|s| (s.msn, s.parts.len() as u32 - 1))
    }

    /// Whether a part starting with (or without) a key frame begins the next segment.
    fn cuts(&self, independent: bool) -> bool {
        match &self.open {
            None => true,
            Some(open) => independent && (self.shape.reached(open.duration()) || self.break_pending),
        }
    }

    /// Where a part starting with (or without) a key frame goes if it is
    /// pushed next: (msn, index), exactly as [`Timeline::push`] will place
    /// it. The packager names a part still being written by it, so its
    /// first bytes can be served before its duration is known.
    pub fn position(&self, independent: bool) -> (u64, u32) {
        match &self.open {
            Some(open) if !self.cuts(independent) => (open.msn, open.parts.len() as u32),
            _ => (self.next_msn, 0),
        }
    }

    /// The part the next push will most likely be (EXT-X-PRELOAD-HINT): the
    /// first of the next segment once the open one has reached the target
    /// (the encoder puts a key frame there), else the open one's next. (If
    /// the encoder does otherwise, the hinted part never comes: a player
    /// that asked gets a 404 and follows the next playlist, as §6.2.6 allows.)
    pub fn next_part(&self) -> (u64, u32) {
        match self.open() {
            Some(s) if self.shape.reached(s.duration()) || self.break_pending => (self.next_msn, 0),
            Some(s) => (s.msn, s.parts.len() as u32),
            None => (self.next_msn, 0),
        }
    }

    /// Where the timeline stands against a blocking request for `want`.
    /// With a part: ready once that part, or any later one, is listed.
    /// Without: ready once segment `msn` is complete. Too far: more than two
    /// segments past the last one, or a part more than the Advance Part
    /// Limit past the last part.
    pub fn availability(&self, want: Want) -> Availability {
        if self.ended {
            return Availability::Ready;
        }
        let last_segment = self.last_segment();
        let next_segment = last_segment.map_or(0, |m| m + 1);
        if want.msn > next_segment + 1 {
            return Availability::TooFar;
        }
        match want.part {
            None => {
                if last_segment.is_some_and(|m| m >= want.msn) {
                    Availability::Ready
                } else {
                    Availability::Wait
                }
            }
            Some(part) => {
                let (msn, idx) = self.last_part().unwrap_or((0, 0));
                if self.last_part().is_some() && (msn, idx as u64) >= (want.msn, part as u64) {
                    return Availability::Ready;
                }
                // How many parts ahead of the last one the request is, as closely as the shape says.
                let per = self.shape.parts_per_segment();
                let ahead = if want.msn == msn {
                    (part as u64).saturating_sub(idx as u64)
                } else {
                    (want.msn - msn).saturating_mul(per).saturating_add(part as u64).saturating_sub(idx as u64)
                };
                // "Exceeds the last part by the Advance Part Limit" (§6.2.5.2).
                if ahead >= self.shape.advance_part_limit() {
                    Availability::TooFar
                } else {
                    Availability::Wait
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn shape() -> Shape {
        Shape { part_target: Duration::from_millis(500), segment_target: Duration::from_secs(2), window: Duration::from_secs(10) }
    }

    #[test]
    fn six_parts_of_ten_frames_make_a_two_second_segment() {
        let shape = Shape { part_target: Duration::from_millis(334), segment_target: Duration::from_secs(2), window: Duration::from_secs(60) };
        let mut t = Timeline::new(shape);
        let ten_frames = Duration::from_nanos(333_333_333);
        let at = SystemTime::UNIX_EPOCH;
        let msns: Vec<u64> = (0..12).map(|i| t.push(Part { duration: ten_frames, independent: i % 3 == 0 }, at).unwrap().0).collect();
        assert_eq!(msns, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    }

    fn part(ms: u64, independent: bool) -> Part {
        Part { duration: Duration::from_millis(ms), independent }
    }

    /// Pushes `n` parts of 500 ms, a key frame every second (every other part).
    fn feed(t: &mut Timeline, n: usize) {
        for i in 0..n {
            let at = SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(500 * i as u64);
            t.push(part(500, i % 2 == 0), at).unwrap();
        }
    }

    #[test]
    fn a_part_is_placed_where_its_position_said() {
        let mut t = Timeline::new(shape());
        for i in 0..13usize {
            // Key frames every other part, and one stray non-key part where a segment could cut.
            let independent = i % 2 == 0 && i != 8;
            let predicted = t.position(independent);
            let at = SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(500 * i as u64);
            assert_eq!(t.push(part(500, independent), at).unwrap(), predicted, "part {i}");
        }
        t.discontinue();
        assert_eq!(t.position(true), (t.next_msn, 0), "after a break, the next part begins a segment");
    }

    #[test]
    fn segments_are_cut_at_the_first_key_frame_after_the_target() {
        let mut t = Timeline::new(shape());
        feed(&mut t, 9);
        let closed: Vec<_> = t.segments().map(|s| (s.msn, s.parts.len())).collect();
        assert_eq!(closed, vec![(0, 4), (1, 4)]);
        assert_eq!(t.open().map(|s| (s.msn, s.parts.len())), Some((2, 1)));
        assert_eq!(t.last_part(), Some((2, 0)));
        assert_eq!(t.next_part(), (2, 1));
        assert_eq!(t.segments().next().unwrap().duration(), Duration::from_secs(2));
        assert_eq!(shape().target_duration(), 3);
    }

    #[test]
    fn the_first_part_of_a_segment_must_be_independent_and_parts_fit_the_target() {
        let mut t = Timeline::new(shape());
        assert_eq!(t.push(part(500, false), SystemTime::UNIX_EPOCH), Err(PushError::NotIndependent { msn: 0 }));
        assert!(matches!(t.push(part(600, true), SystemTime::UNIX_EPOCH), Err(PushError::PartTooLong { .. })));
        assert_eq!(t.push(part(0, true), SystemTime::UNIX_EPOCH), Err(PushError::EmptyPart));
        t.push(part(500, true), SystemTime::UNIX_EPOCH).unwrap();
        // No key frame for too long: the segment would outgrow the target duration.
        let mut refused = None;
        for _ in 0..10 {
            if let Err(e) = t.push(part(500, false), SystemTime::UNIX_EPOCH) {
                refused = Some(e);
                break;
            }
        }
        assert!(matches!(refused, Some(PushError::SegmentTooLong { msn: 0, .. })), "{refused:?}");
    }

    #[test]
    fn the_window_drops_old_segments_but_keeps_three() {
        let mut t = Timeline::new(Shape { window: Duration::from_secs(4), ..shape() });
        feed(&mut t, 4 * 8 + 1); // eight segments closed, the ninth open
        let msns: Vec<_> = t.segments().map(|s| s.msn).collect();
        // A 4 s window, but never under three target durations (9 s): five 2 s segments stay.
        assert_eq!(msns, vec![3, 4, 5, 6, 7]);
        assert_eq!(t.media_sequence(), 3);
        let mut t = Timeline::new(Shape { window: Duration::from_secs(60), ..shape() });
        feed(&mut t, 4 * 40 + 1);
        assert_eq!(t.segments().map(Segment::duration).sum::<Duration>(), Duration::from_secs(60));
    }

    #[test]
    fn a_discontinuity_marks_the_next_segment_and_is_counted_when_it_leaves() {
        let mut t = Timeline::new(Shape { window: Duration::from_secs(4), ..shape() });
        feed(&mut t, 3);
        t.discontinue();
        // The next independent part starts segment 1 at once, marked.
        t.push(part(500, true), SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(t.open().unwrap().msn, 1);
        assert!(t.open().unwrap().discontinuity);
        assert_eq!(t.segments().next().unwrap().duration(), Duration::from_millis(1500));
        feed(&mut t, 4 * 10);
        assert_eq!(t.discontinuity_sequence(), 1);
        assert!(t.segments().all(|s| !s.discontinuity));
    }

    #[test]
    fn a_blocking_request_is_ready_once_its_part_or_a_later_one_is_listed() {
        let mut t = Timeline::new(shape());
        feed(&mut t, 5); // segment 0 closed (4 parts), segment 1 has part 0
        let want = |msn, part| Want { msn, part: Some(part) };
        assert_eq!(t.availability(want(1, 0)), Availability::Ready);
        assert_eq!(t.availability(want(0, 7)), Availability::Ready, "a later part satisfies it");
        assert_eq!(t.availability(want(1, 1)), Availability::Wait);
        assert_eq!(t.availability(Want { msn: 1, part: None }), Availability::Wait, "segment 1 is not complete");
        assert_eq!(t.availability(Want { msn: 0, part: None }), Availability::Ready);
    }

    #[test]
    fn a_request_too_far_ahead_is_refused() {
        let mut t = Timeline::new(shape());
        feed(&mut t, 5);
        // Last segment 0: msn 2 may be waited for, 3 is more than two past it.
        assert_eq!(t.availability(Want { msn: 2, part: None }), Availability::Wait);
        assert_eq!(t.availability(Want { msn: 3, part: None }), Availability::TooFar);
        // Parts: the limit is 3 / 0.5 s = 6 parts past the last (1, 0).
        assert_eq!(t.shape().advance_part_limit(), 6);
        assert_eq!(t.availability(Want { msn: 1, part: Some(5) }), Availability::Wait);
        assert_eq!(t.availability(Want { msn: 1, part: Some(6) }), Availability::TooFar);
        assert_eq!(t.availability(Want { msn: 2, part: Some(3) }), Availability::TooFar);
        assert_eq!(t.availability(Want { msn: 1, part: Some(u32::MAX) }), Availability::TooFar);
    }

    #[test]
    fn an_ended_stream_answers_every_request_at_once() {
        let mut t = Timeline::new(shape());
        feed(&mut t, 3);
        t.end();
        assert!(t.ended());
        assert_eq!(t.availability(Want { msn: 2, part: Some(0) }), Availability::Ready);
        assert_eq!(t.open(), None);
        assert_eq!(t.segments().count(), 1);
    }

    #[test]
    fn an_empty_timeline_waits_for_its_first_part() {
        let t = Timeline::new(shape());
        assert_eq!(t.availability(Want { msn: 0, part: Some(0) }), Availability::Wait);
        assert_eq!(t.availability(Want { msn: 1, part: None }), Availability::Wait);
        assert_eq!(t.availability(Want { msn: 2, part: None }), Availability::TooFar);
        assert_eq!(t.next_part(), (0, 0));
        assert_eq!(t.media_sequence(), 0);
    }

    #[test]
    fn a_short_part_is_refused_unless_it_was_its_segment_s_last() {
        let mut t = Timeline::new(shape());
        t.push(part(500, true), SystemTime::UNIX_EPOCH).unwrap();
        t.push(part(300, false), SystemTime::UNIX_EPOCH).unwrap();
        // Another part in the same segment: the 300 ms one was not the last.
        assert!(matches!(t.push(part(500, false), SystemTime::UNIX_EPOCH), Err(PushError::PartTooShort { msn: 0, index: 1, .. })));
        // Short and last is fine: the key frame after it starts a new segment.
        let mut t = Timeline::new(shape());
        for p in [part(500, true), part(500, false), part(500, true), part(500, false), part(300, false), part(500, true)] {
            t.push(p, SystemTime::UNIX_EPOCH).unwrap_or_else(|e| panic!("{e}"));
        }
        // …and a short independent part may sit anywhere.
        let mut t = Timeline::new(shape());
        for p in [part(500, true), part(200, true), part(500, false)] {
            t.push(p, SystemTime::UNIX_EPOCH).unwrap();
        }
    }

    #[test]
    fn the_hint_names_the_next_segment_once_the_open_one_is_full() {
        let mut t = Timeline::new(shape());
        feed(&mut t, 3);
        assert_eq!(t.next_part(), (0, 3));
        feed(&mut t, 1); // four parts: 2 s, the target
        assert_eq!(t.next_part(), (1, 0));
    }

    #[test]
    fn a_media_restart_is_a_discontinuity_with_the_next_init() {
        let mut t = Timeline::new(shape());
        feed(&mut t, 3);
        assert_eq!(t.restart_media(), 1);
        t.push(part(500, true), SystemTime::UNIX_EPOCH).unwrap();
        let open = t.open().unwrap();
        assert_eq!((open.msn, open.init, open.discontinuity), (1, 1, true));
        assert_eq!(t.segments().next().unwrap().init, 0);
    }
}
