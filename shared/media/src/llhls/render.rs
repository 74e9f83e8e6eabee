//! A rendition's LL-HLS media playlist, written from its [`Timeline`]
//! (RFC 8216bis §4.4, the Low-Latency profile of Appendix B.1):
//! server control (blocking reload, part hold-back, skip), the part target,
//! every segment with its program date-time, the parts of the last three
//! target durations and of the segment being written, a preload hint for
//! the next part, and the other renditions' reports. A delta update
//! (`_HLS_skip=YES`) replaces the segments before the skip boundary with
//! one `EXT-X-SKIP`.

use std::fmt::Write;
use std::time::Duration;

use super::names::Object;
use super::timeline::{Segment, Timeline};

/// EXT-X-SKIP needs version 9; nothing here needs more (§8).
pub const VERSION: u32 = 9;

/// Where another rendition of the same stream stands (EXT-X-RENDITION-REPORT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// Its media playlist, relative to this one (`../720p/index.m3u8`).
    pub uri: String,
    pub last_msn: u64,
    pub last_part: u32,
}

/// PART-HOLD-BACK: three part targets, the spec's recommendation (at least two are required).
pub fn part_hold_back(timeline: &Timeline) -> Duration {
    timeline.shape().part_target * 3
}

/// CAN-SKIP-UNTIL: six target durations, the least the spec allows.
pub fn skip_until(timeline: &Timeline) -> Duration {
    Duration::from_secs(6 * timeline.shape().target_duration())
}

fn secs(d: Duration) -> String {
    format!("{:.5}", d.as_secs_f64())
}

/// The media playlist. `skip`: a delta update. `reports`: the other renditions.
pub fn media_playlist(timeline: &Timeline, skip: bool, reports: &[RenditionReport]) -> String {
    let shape = timeline.shape();
    let target = shape.target_duration();
    let mut out = String::with_capacity(4096);
    let w = &mut out;
    let _ = writeln!(w, "#EXTM3U");
    let _ = writeln!(w, "#EXT-X-VERSION:{VERSION}");
    let _ = writeln!(w, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        w,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}",
        secs(part_hold_back(timeline)),
        secs(skip_until(timeline))
    );
    let _ = writeln!(w, "#EXT-X-PART-INF:PART-TARGET={}", secs(shape.part_target));
    let _ = writeln!(w, "#EXT-X-MEDIA-SEQUENCE:{}", timeline.media_sequence());
    if timeline.discontinuity_sequence() > 0 {
        let _ = writeln!(w, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", timeline.discontinuity_sequence());
    }

    let closed: Vec<&Segment> = timeline.segments().collect();
    let open = timeline.open();
    // Offsets from the end of the playlist, to place the skip boundary and the parts' horizon.
    let total: Duration = closed.iter().map(|s| s.duration()).chain(open.map(Segment::duration)).sum();
    let parts_from = total.saturating_sub(Duration::from_secs(3 * target));
    // A delta update only while the stream is live (§6.2.5.1: not with
    // ENDLIST); it leaves out the segments that end farther than the skip
    // boundary from the end.
    let skip_before = if skip && !timeline.ended() { total.saturating_sub(skip_until(timeline)) } else { Duration::ZERO };
    let mut start = Duration::ZERO;
    let mut listed: Vec<(&Segment, bool, bool)> = Vec::new(); // segment, with parts, complete
    let mut skipped = 0;
    for seg in &closed {
        let end = start + seg.duration();
        start = end;
        if end < skip_before {
            skipped += 1;
        } else {
            listed.push((seg, end > parts_from, true));
        }
    }
    if let Some(seg) = open {
        listed.push((seg, true, false));
    }
    // The init segment the first listed segment needs; a later one where it changes.
    // (After the skip: it applies to the segments listed, not to those skipped.)
    if skipped > 0 {
        let _ = writeln!(w, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let mut init = listed.first().map_or(timeline.generation(), |(s, _, _)| s.init);
    let _ = writeln!(w, "#EXT-X-MAP:URI=\"{}\"", Object::Init { generation: init });
    for (seg, with_parts, complete) in listed {
        let map = (seg.init != init).then_some(seg.init);
        init = seg.init;
        segment(w, seg, map, with_parts, complete);
    }
    if timeline.ended() {
        let _ = writeln!(w, "#EXT-X-ENDLIST");
        return out;
    }
    let (msn, index) = timeline.next_part();
    let _ = writeln!(w, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", Object::Part { msn, index });
    for r in reports {
        let _ = writeln!(w, "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}", r.uri, r.last_msn, r.last_part);
    }
    out
}

/// One segment: its tags before its first part (§4.4.4.9: discontinuity,
/// a new init segment, date-time), its parts when they are recent, and its
/// URI once it is complete.
fn segment(w: &mut String, seg: &Segment, map: Option<u32>, with_parts: bool, complete: bool) {
    if seg.discontinuity {
        let _ = writeln!(w, "#EXT-X-DISCONTINUITY");
    }
    if let Some(generation) = map {
        let _ = writeln!(w, "#EXT-X-MAP:URI=\"{}\"", Object::Init { generation });
    }
    let _ = writeln!(w, "#EXT-X-PROGRAM-DATE-TIME:{}", humantime::format_rfc3339_millis(seg.program_date_time));
    if with_parts {
        for (index, part) in seg.parts.iter().enumerate() {
            let uri = Object::Part { msn: seg.msn, index: index as u32 };
            let independent = if part.independent { ",INDEPENDENT=YES" } else { "" };
            let _ = writeln!(w, "#EXT-X-PART:DURATION={},URI=\"{uri}\"{independent}", secs(part.duration));
        }
    }
    if complete {
        let _ = writeln!(w, "#EXTINF:{},", secs(seg.duration()));
        let _ = writeln!(w, "{}", Object::Segment { msn: seg.msn });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llhls::timeline::{Part, Shape};
    use std::time::SystemTime;

    fn timeline(parts: usize) -> Timeline {
        let mut t = Timeline::new(Shape { part_target: Duration::from_millis(500), segment_target: Duration::from_secs(2), window: Duration::from_secs(60) });
        for i in 0..parts {
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + 500 * i as u64);
            t.push(Part { duration: Duration::from_millis(500), independent: i % 2 == 0 }, at).unwrap();
        }
        t
    }

    fn lines(p: &str, prefix: &str) -> Vec<String> {
        p.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
    }

    #[test]
    fn the_header_says_what_a_low_latency_player_needs() {
        let p = media_playlist(&timeline(9), false, &[]);
        let head: Vec<&str> = p.lines().take(8).collect();
        assert_eq!(
            head,
            [
                "#EXTM3U",
                "#EXT-X-VERSION:9",
                "#EXT-X-TARGETDURATION:3",
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.50000,CAN-SKIP-UNTIL=18.00000",
                "#EXT-X-PART-INF:PART-TARGET=0.50000",
                "#EXT-X-MEDIA-SEQUENCE:0",
                "#EXT-X-MAP:URI=\"init-0.mp4\"",
                "#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:00.000Z",
            ]
        );
    }

    #[test]
    fn complete_segments_the_open_one_s_parts_then_the_hint() {
        let p = media_playlist(&timeline(9), false, &[]);
        assert_eq!(lines(&p, "seg-"), ["seg-0.m4s", "seg-1.m4s"]);
        assert_eq!(lines(&p, "#EXTINF"), ["#EXTINF:2.00000,", "#EXTINF:2.00000,"]);
        // Segment 2 is open with one part: listed, no EXTINF yet; the hint names its next part.
        assert!(p.contains("#EXT-X-PART:DURATION=0.50000,URI=\"part-2-0.m4s\",INDEPENDENT=YES\n"));
        assert!(p.contains("#EXT-X-PART:DURATION=0.50000,URI=\"part-0-1.m4s\"\n"), "a part without a key frame is not INDEPENDENT");
        assert!(p.trim_end().ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-2-1.m4s\""));
        assert_eq!(lines(&p, "#EXT-X-PROGRAM-DATE-TIME").len(), 3, "every segment, the open one too");
    }

    #[test]
    fn parts_are_listed_for_the_last_three_target_durations_only() {
        let p = media_playlist(&timeline(4 * 10 + 1), false, &[]);
        // 10 segments of 2 s and one part (20.5 s): the parts of every segment that ends
        // within three target durations (9 s) of the end, 5 (10–12 s) onwards.
        let with_parts: std::collections::BTreeSet<String> =
            lines(&p, "#EXT-X-PART:").iter().map(|l| l.split("part-").nth(1).unwrap().split('-').next().unwrap().to_owned()).collect();
        assert_eq!(with_parts.into_iter().collect::<Vec<_>>(), ["10", "5", "6", "7", "8", "9"]);
    }

    #[test]
    fn a_delta_update_skips_what_lies_before_the_boundary() {
        let t = timeline(4 * 20 + 1); // 20 segments (40 s) and one part
        let full = media_playlist(&t, false, &[]);
        let delta = media_playlist(&t, true, &[]);
        assert_eq!(lines(&full, "seg-").len(), 20);
        // The boundary is 18 s before the end (40.5 s): segments ending by 22.5 s, 0..=10, go.
        assert_eq!(lines(&delta, "#EXT-X-SKIP"), ["#EXT-X-SKIP:SKIPPED-SEGMENTS=11"]);
        assert_eq!(lines(&delta, "seg-").first().map(String::as_str), Some("seg-11.m4s"));
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "the media sequence still names the first segment, skipped or not");
        assert!(delta.contains("#EXT-X-MAP:URI=\"init-0.mp4\""));
        // The skipped segments' lines are the only difference.
        assert_eq!(full.lines().count() - delta.lines().count(), 11 * 3 - 1);
    }

    #[test]
    fn reports_name_the_other_renditions_after_the_hint() {
        let r = RenditionReport { uri: "../720p/index.m3u8".into(), last_msn: 2, last_part: 0 };
        let p = media_playlist(&timeline(9), false, &[r]);
        assert!(p.trim_end().ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-2-1.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=2,LAST-PART=0"));
    }

    #[test]
    fn an_ended_stream_closes_its_playlist_and_never_skips() {
        let mut t = timeline(4 * 20 + 1);
        t.end();
        let p = media_playlist(&t, true, &[RenditionReport { uri: "x".into(), last_msn: 0, last_part: 0 }]);
        assert!(p.trim_end().ends_with("seg-20.m4s\n#EXT-X-ENDLIST"));
        assert!(!p.contains("PRELOAD-HINT") && !p.contains("EXT-X-SKIP") && !p.contains("RENDITION-REPORT"));
    }

    #[test]
    fn a_restart_is_tagged_before_the_segment_s_first_part_with_its_init() {
        let mut t = timeline(5);
        t.restart_media();
        t.push(Part { duration: Duration::from_millis(500), independent: true }, SystemTime::UNIX_EPOCH).unwrap();
        let p = media_playlist(&t, false, &[]);
        let at = p.find("#EXT-X-DISCONTINUITY\n").expect("tagged");
        assert!(p[at..].starts_with(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z\n#EXT-X-PART:DURATION=0.50000,URI=\"part-2-0.m4s\""
        ));
        assert!(p.contains("#EXT-X-MAP:URI=\"init-0.mp4\"\n"), "the segments before still name theirs");
    }
}
