//! The LL-HLS packager on what ffmpeg really writes: a lavfi clip encoded
//! with a key frame every second into half-second fragments, read from its
//! stdout as the live service will, cut into parts and segments; then the
//! init segment and the segments, concatenated, decode whole with ffprobe,
//! and an independent part decodes on its own after the init segment.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use media::llhls::packager::{Output, Packager};
use media::llhls::render::media_playlist;
use media::llhls::timeline::Shape;

const SECONDS: u32 = 6;
const FPS: u32 = 30;

fn encode() -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x180:rate={FPS}"))
        .args(["-t", &SECONDS.to_string(), "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"])
        .args(["-g", &FPS.to_string(), "-keyint_min", &FPS.to_string(), "-sc_threshold", "0"])
        .args(["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "500000", "pipe:1"])
        .stderr(Stdio::inherit())
        .output()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(out.status.success(), "ffmpeg failed: {:?}", out.status);
    out.stdout
}

/// Frames ffprobe decodes in a file.
fn decoded_frames(bytes: &[u8]) -> u64 {
    let mut f = tempfile();
    f.1.write_all(bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&f.0)
        .output()
        .expect("ffprobe runs");
    std::fs::remove_file(&f.0).ok();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("ffprobe said {:?} {:?}", out.stdout, out.stderr))
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("media-test-{}-{:?}.mp4", std::process::id(), std::thread::current().id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

#[test]
fn ffmpeg_fragments_become_parts_and_segments_that_decode() {
    let shape = Shape { part_target: Duration::from_millis(500), segment_target: Duration::from_secs(2), window: Duration::from_secs(60) };
    let mut p = Packager::new(shape, 16 << 20);
    let stream = encode();
    let mut out = Vec::new();
    // As a pipe delivers it: reads of a few KiB.
    for chunk in stream.chunks(4096) {
        out.extend(p.feed(chunk, SystemTime::now()).expect("packaged"));
    }
    out.extend(p.finish());

    let init = out.iter().find_map(|o| if let Output::Init { bytes, .. } = o { Some(bytes.clone()) } else { None }).expect("an init segment");
    let parts: Vec<(u64, u32, bool, &Vec<u8>)> = out
        .iter()
        .filter_map(|o| if let Output::Part { msn, index, independent, bytes } = o { Some((*msn, *index, *independent, bytes)) } else { None })
        .collect();
    let segments: Vec<&Vec<u8>> = out.iter().filter_map(|o| if let Output::Segment { bytes, .. } = o { Some(bytes) } else { None }).collect();

    assert_eq!(parts.len(), (SECONDS * 2) as usize, "one part per half second");
    // The key-frame flags are read from the boxes, not assumed: one key frame a second, so every other part.
    assert_eq!(parts.iter().filter(|p| p.2).count(), SECONDS as usize, "independent parts");
    assert!(parts.iter().enumerate().all(|(i, p)| p.2 == (i % 2 == 0)), "key frames at 0, 1, 2… s");
    assert_eq!(segments.len(), (SECONDS / 2) as usize, "2 s segments");
    let t = p.timeline();
    let total: Duration = t.segments().map(|s| s.duration()).sum();
    assert_eq!(total, Duration::from_secs(SECONDS as u64));
    for s in t.segments() {
        assert_eq!(s.duration(), Duration::from_secs(2), "segment {}", s.msn);
        assert!(s.parts.iter().all(|p| p.duration <= shape.part_target));
    }

    let playlist = media_playlist(t, false, &[]);
    assert!(playlist.contains("#EXT-X-PART:DURATION=0.50000,URI=\"part-0-0.m4s\",INDEPENDENT=YES"), "{playlist}");
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"));

    let whole: Vec<u8> = std::iter::once(&init).chain(segments.iter().copied()).flatten().copied().collect();
    assert_eq!(decoded_frames(&whole), (SECONDS * FPS) as u64, "init + segments decode whole");
    // A player joining at an independent part needs only the init segment and that part.
    let (_, _, _, part) = parts.iter().find(|p| p.0 == 1 && p.1 == 0).expect("part 1.0");
    assert_eq!(decoded_frames(&[init.as_slice(), part].concat()), (FPS / 2) as u64);
}
