//! The live ladder as one ffmpeg command: FLV on stdin, one fragmented MP4
//! per rendition on its own pipe (fd 3, 4, …), every video rung with key
//! frames at the same instants (fixed frame rate, a forced key frame every
//! interval, no scene-cut key frames) so a player switching rungs lands on
//! a segment boundary, and one AAC rendition.
//!
//! Video fragments are chunks of a part: a part of ten frames is written as
//! two fragments of five, so the origin can stream the first half of a
//! part while x264 encodes the second (ffmpeg writes a fragment only once it
//! is complete). Chunks divide the part and the key frame interval, so
//! parts and segments still start on key frames. ffmpeg closes a fragment
//! before the first packet whose start is at least `-frag_duration` past
//! the fragment's start, so the limit is set half a frame under the chunk.
//! Audio fragments are whole parts (an AAC frame under the target): audio
//! parts are small, and a moof per chunk would cost more than it saves.

use std::time::Duration;

use crate::configuration::{EncoderSettings, Rung};

/// A rendition the encoder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Video(Rung),
    Audio { kbps: u32 },
}

impl Output {
    pub fn name(&self) -> &str {
        match self {
            Self::Video(r) => &r.name,
            Self::Audio { .. } => "audio",
        }
    }
}

/// The first fd ffmpeg writes renditions to (0–2 are stdio).
pub const FIRST_FD: usize = 3;
/// One AAC frame at 48 kHz: 1024 samples.
const AAC_FRAME: Duration = Duration::from_micros(21_334);

fn fragment_flags(args: &mut Vec<String>, frag: Duration) {
    for a in ["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-frag_duration"] {
        args.push(a.into());
    }
    args.push(frag.as_micros().to_string());
}

/// Frames per video chunk: the largest divisor of a part's frames that is
/// at most half of them and at least three frames (a moof per frame would
/// cost more than it saves); a part that cannot be so divided is one chunk.
fn chunk_frames(part_frames: u32) -> u32 {
    (3..=part_frames / 2).rev().find(|d| part_frames % d == 0).unwrap_or(part_frames)
}

/// ffmpeg's arguments for `outputs`, rendition `i` on fd `FIRST_FD + i`.
pub fn arguments(enc: &EncoderSettings, part_target: Duration, outputs: &[Output]) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostats", "-probesize", "65536", "-analyzeduration", "500000", "-f", "flv", "-i", "pipe:0"]
        .into_iter()
        .map(String::from)
        .collect();
    let videos: Vec<&Rung> = outputs.iter().filter_map(|o| if let Output::Video(r) = o { Some(r) } else { None }).collect();
    // One decode, one frame-rate conversion, one split: every rung sees the same frames.
    let mut graph = format!("[0:v]fps={},split={}", enc.fps, videos.len());
    for i in 0..videos.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in videos.iter().enumerate() {
        // Never taller than the source (min), widths even (-2) for 4:2:0.
        graph.push_str(&format!(";[s{i}]scale=-2:'min({},ih)',format=yuv420p[v{i}]", r.height));
    }
    a.push("-filter_complex".into());
    a.push(graph);
    let gop = (enc.keyframe_interval.0.as_secs_f64() * enc.fps as f64).round().max(1.0) as u32;
    let frame = Duration::from_secs_f64(1.0 / enc.fps as f64);
    let part_frames = ((part_target.as_secs_f64() * enc.fps as f64) + 1e-6).floor().max(1.0) as u32;
    let chunk = Duration::from_secs_f64(f64::from(chunk_frames(part_frames)) / enc.fps as f64);
    let mut v = 0;
    for (i, o) in outputs.iter().enumerate() {
        match o {
            Output::Video(r) => {
                a.extend(["-map".into(), format!("[v{v}]")]);
                v += 1;
                let kbps = r.video_kbps;
                for x in ["-c:v", "libx264", "-preset", &enc.preset, "-tune", "zerolatency", "-sc_threshold", "0", "-bf", "0"] {
                    a.push(x.into());
                }
                a.extend(["-g".into(), gop.to_string(), "-keyint_min".into(), gop.to_string()]);
                a.extend(["-force_key_frames".into(), format!("expr:gte(t,n_forced*{})", enc.keyframe_interval.0.as_secs_f64())]);
                a.extend(["-b:v".into(), format!("{kbps}k"), "-maxrate".into(), format!("{}k", kbps * 11 / 10), "-bufsize".into(), format!("{kbps}k")]);
                a.push("-an".into());
                fragment_flags(&mut a, chunk.saturating_sub(frame / 2));
            }
            Output::Audio { kbps } => {
                for x in ["-map", "0:a:0", "-c:a", "aac", "-ar", "48000", "-ac", "2", "-vn"] {
                    a.push(x.into());
                }
                a.extend(["-b:a".into(), format!("{kbps}k")]);
                fragment_flags(&mut a, part_target.saturating_sub(AAC_FRAME));
            }
        }
        a.push(format!("pipe:{}", FIRST_FD + i));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::configuration::Seconds;

    fn enc() -> EncoderSettings {
        EncoderSettings { ffmpeg: "ffmpeg".into(), preset: "veryfast".into(), fps: 30, keyframe_interval: Seconds(Duration::from_secs(1)), audio_kbps: 128, max_restarts: 3 }
    }

    #[test]
    fn every_rung_is_split_from_one_decode_with_aligned_key_frames_and_its_own_pipe() {
        let outs = vec![
            Output::Video(Rung { name: "720p".into(), height: 720, video_kbps: 2800 }),
            Output::Video(Rung { name: "360p".into(), height: 360, video_kbps: 700 }),
            Output::Audio { kbps: 128 },
        ];
        let a = arguments(&enc(), Duration::from_millis(500), &outs).join(" ");
        assert!(a.contains("[0:v]fps=30,split=2[s0][s1];[s0]scale=-2:'min(720,ih)',format=yuv420p[v0];[s1]scale=-2:'min(360,ih)'"), "{a}");
        assert_eq!(a.matches("-g 30 -keyint_min 30").count(), 2);
        assert_eq!(a.matches("-sc_threshold 0").count(), 2);
        // Parts of 15 frames in chunks of 5: a chunk less half a frame.
        assert!(a.contains("-frag_duration 150000 pipe:3"), "{a}");
        assert!(a.contains("-frag_duration 150000 pipe:4"), "{a}");
        assert!(a.contains("-map 0:a:0") && a.contains("-frag_duration 478666 pipe:5"), "{a}");
    }

    #[test]
    fn chunks_divide_parts_into_pieces_of_at_least_three_frames() {
        assert_eq!(chunk_frames(10), 5);
        assert_eq!(chunk_frames(15), 5);
        assert_eq!(chunk_frames(12), 6);
        assert_eq!(chunk_frames(7), 7);
        assert_eq!(chunk_frames(5), 5);
        assert_eq!(chunk_frames(1), 1);
    }
}
