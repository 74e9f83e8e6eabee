//! The one ffmpeg pass per job: one decode, a `split` to every rung and to
//! the thumbnail frames; one encode per rung and one audio encode; CMAF
//! (fMP4) HLS out, video and audio in separate renditions so the same
//! segments also serve DASH and an audio-only variant.
//!
//! ffmpeg prints no progress until every output has started, so every
//! output here starts at the first frame. Thumbnails leave as raw frames,
//! tiled into sheets afterwards ([`crate::thumbnails`]); the poster output
//! takes frame 0, then the first frame at [`poster_time`] overwrites it. A
//! sprite sheet (complete after 100 thumbnails, a third of a long film) or a
//! poster selected at 10 % would hide progress until then, and trip the
//! stall timeout on long sources.
//!
//! Keyframes are forced every 2 s on the shared timeline (and scene-cut
//! keyframes are off), so every rung has IDR frames at the same instants and
//! a player can switch rungs at any segment boundary; 6 s segments are then
//! exactly three GOPs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::confine::Confinement;
use crate::job::{Failure, JobError};
use crate::ladder::PlannedRung;
use crate::probe::SourceInfo;
use crate::rejection::Rejection;
use crate::thumbnails::Sprites;

pub const SEGMENT_SECONDS: u32 = 6;
pub const KEYFRAME_SECONDS: u32 = 2;
pub const AUDIO_KBPS: u32 = 128;
pub const POSTER_FILE: &str = "poster.jpg";
/// The audio rendition's folder and name.
pub const AUDIO_NAME: &str = "audio";

/// What to encode and where.
pub struct Encode<'a> {
    pub input: &'a Path,
    /// The demuxer the probe found; ffmpeg is forced to it.
    pub demuxer: &'a str,
    pub confinement: &'a Confinement,
    /// Set when the source is faster than the limit: the outputs get this rate.
    pub clamp_fps: Option<f64>,
    pub out_dir: &'a Path,
    pub rungs: &'a [PlannedRung],
    pub source: &'a SourceInfo,
    pub preset: &'a str,
    pub sprites: &'a Sprites,
}

/// The poster comes from 10% into the video (capped at 10 s): past any fade-in.
pub fn poster_time(duration: f64) -> f64 {
    (duration * 0.1).min(10.0)
}

pub fn args(e: &Encode) -> Vec<String> {
    let n = e.rungs.len();
    let clamp = e.clamp_fps.map(|r| format!("fps={r},")).unwrap_or_default();
    let mut graph = format!("[0:v]{clamp}split={}", n + 2);
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    graph.push_str("[sp][st]");
    for (i, r) in e.rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={}:{},setsar=1[v{i}]", r.width, r.height));
    }
    let top = &e.rungs[0];
    // Frame 0, then the first frame at the poster time and nothing after.
    let t = format!("{:.3}", poster_time(e.source.duration));
    graph.push_str(&format!(
        ";[sp]select='eq(n\\,0)+gte(t\\,{t})*lt(prev_selected_t\\,{t})',scale={}:{},setsar=1[poster]",
        top.width, top.height
    ));
    graph.push_str(&format!(";[st]{}[thumbs]", e.sprites.filter()));

    let rate = e.clamp_fps.unwrap_or(e.source.frame_rate);
    let gop = ((rate * KEYFRAME_SECONDS as f64).round() as u32).max(1).to_string();
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-progress", "pipe:1", "-nostats"].map(String::from).to_vec();
    a.extend(e.confinement.input_args(Some(e.demuxer)));
    a.extend(["-i".into(), Confinement::input_url(e.input)]);
    a.extend(["-filter_complex".into(), graph]);
    for i in 0..n {
        a.extend(["-map".into(), format!("[v{i}]")]);
    }
    if e.source.has_audio {
        a.extend(["-map".into(), "0:a:0".into()]);
    }
    a.extend(
        [
            "-c:v", "libx264", "-preset", e.preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-sc_threshold", "0", "-g", &gop, "-keyint_min", &gop,
            // No B-frames: with them the first video frame is presented two
            // frames after the audio, shifted back only by an edit list, which
            // hls.js and MSE ignore (hls.js reported a hole at 0, Shaka jumped a
            // gap). Signed composition offsets fixed the players but broke
            // ffmpeg's DASH client, so the frames are simply not reordered; it
            // costs some compression at the same bitrate.
            "-bf", "0",
            "-force_key_frames", &format!("expr:gte(t,n_forced*{KEYFRAME_SECONDS})"),
        ]
        .map(String::from),
    );
    for (i, r) in e.rungs.iter().enumerate() {
        a.extend([
            format!("-b:v:{i}"), format!("{}k", r.video_kbps),
            format!("-maxrate:v:{i}"), format!("{}k", r.maxrate_kbps()),
            format!("-bufsize:v:{i}"), format!("{}k", r.bufsize_kbps()),
        ]);
    }
    if e.source.has_audio {
        a.extend(["-c:a", "aac", "-b:a", &format!("{AUDIO_KBPS}k"), "-ac", "2", "-ar", "48000"].map(String::from));
    }
    let mut stream_map: Vec<String> = e.rungs.iter().enumerate().map(|(i, r)| format!("v:{i},name:{}", r.name)).collect();
    if e.source.has_audio {
        stream_map.push(format!("a:0,name:{AUDIO_NAME}"));
    }
    let out = e.out_dir.display();
    a.extend(
        [
            "-f", "hls", "-hls_time", &SEGMENT_SECONDS.to_string(), "-hls_playlist_type", "vod",
            "-hls_segment_type", "fmp4", "-hls_flags", "independent_segments",
            "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", &format!("{out}/%v/seg_%05d.m4s"),
            "-var_stream_map", &stream_map.join(" "), &format!("{out}/%v/index.m3u8"),
            // Two frames, each overwriting the file: frame 0, then the poster.
            // passthrough: an image output is constant-rate by default, and
            // would fill the gap with copies of frame 0 instead.
            "-map", "[poster]", "-fps_mode", "passthrough", "-frames:v", "2", "-update", "1", &format!("{out}/{POSTER_FILE}"),
            "-map", "[thumbs]", "-f", "rawvideo", "-pix_fmt", "rgb24", &format!("{out}/{}", crate::thumbnails::FRAMES_FILE),
        ]
        .map(String::from),
    );
    a
}

/// A progress report parsed from `-progress pipe:1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub out_seconds: f64,
    pub fps: f64,
    pub speed: f64,
}

/// Folds one `key=value` line into `p`; true at the end of a report block.
pub fn parse_progress_line(line: &str, p: &mut Progress) -> bool {
    let Some((k, v)) = line.trim().split_once('=') else { return false };
    match k {
        // Despite its name, out_time_ms is in microseconds too.
        "out_time_us" | "out_time_ms" => {
            if let Ok(us) = v.parse::<i64>() {
                p.out_seconds = us.max(0) as f64 / 1e6;
            }
        }
        "fps" => p.fps = v.parse().unwrap_or(p.fps),
        "speed" => p.speed = v.trim_end_matches('x').trim().parse().unwrap_or(p.speed),
        "progress" => return true,
        _ => {}
    }
    false
}

/// How long ffmpeg may run: without progress, and in all.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// Output time has not moved for this long: a hung decode or a stuck
    /// filesystem must not hold a job slot forever. Transient.
    pub stall: Duration,
    /// The whole encode, proportional to the duration: a source built to be
    /// slow to decode must not either. Permanent.
    pub deadline: Duration,
}

/// Runs ffmpeg, confined, to completion under `watchdog`. Exit by signal
/// (ours, the OOM killer's, an operator's) is transient; a non-zero exit
/// code is permanent. ffmpeg's own error output goes to the log only.
/// Dropping the future kills ffmpeg.
pub async fn run(ffmpeg: &str, args: &[String], confinement: &Confinement, watchdog: Watchdog, mut on_progress: impl FnMut(&Progress)) -> Result<(), JobError> {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    confinement.apply(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| JobError::Transient(Failure::Internal, anyhow::anyhow!("cannot run {ffmpeg}: {e}")))?;
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_tail = tokio::spawn(async move {
        // Only the tail matters for the reason; cap what we keep.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 8192 {
                buf.drain(..buf.len() - 4096);
            }
        }
        String::from_utf8_lossy(&buf).trim().to_owned()
    });
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut p = Progress::default();
    let mut last_advance = tokio::time::Instant::now();
    let mut last_out = -1.0;
    let give_up = tokio::time::Instant::now() + watchdog.deadline;
    loop {
        let stalled_at = last_advance + watchdog.stall;
        match tokio::time::timeout_at(stalled_at.min(give_up), lines.next_line()).await {
            Err(_) if tokio::time::Instant::now() >= give_up => {
                let _ = child.kill().await;
                tracing::warn!(deadline = watchdog.deadline.as_secs(), "ffmpeg overran the encode deadline and was killed");
                return Err(Rejection::TooSlow { secs: watchdog.deadline.as_secs() }.into());
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(JobError::Transient(
                    Failure::Stalled,
                    anyhow::anyhow!("ffmpeg made no progress for {} s and was killed", watchdog.stall.as_secs_f64()),
                ));
            }
            Ok(Ok(Some(line))) => {
                if parse_progress_line(&line, &mut p) {
                    if p.out_seconds > last_out {
                        last_out = p.out_seconds;
                        last_advance = tokio::time::Instant::now();
                    }
                    on_progress(&p);
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => break,
        }
    }
    let status = child.wait().await.map_err(|e| JobError::Transient(Failure::Internal, e.into()))?;
    let tail = stderr_tail.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    match status.code() {
        Some(code) => {
            tracing::warn!(code, stderr = %tail, "ffmpeg could not transcode the source");
            Err(Rejection::Undecodable.into())
        }
        None => Err(JobError::Transient(Failure::FfmpegKilled, anyhow::anyhow!("ffmpeg was killed by a signal: {}", last_line(&tail)))),
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("no error output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::Ladder;

    fn source(audio: bool) -> SourceInfo {
        SourceInfo { width: 1280, height: 720, frame_rate: 30.0, duration: 20.0, has_audio: audio }
    }

    fn encode_clamped(rungs: &[PlannedRung], src: &SourceInfo, sprites: &Sprites, clamp_fps: Option<f64>) -> Vec<String> {
        let confinement = Confinement::new(crate::confine::DEFAULT_FORMATS, crate::confine::NetworkIsolation::Off).unwrap();
        let out_dir = Path::new("/out");
        args(&Encode { input: Path::new("/in"), demuxer: "mov", confinement: &confinement, clamp_fps, out_dir, rungs, source: src, preset: "veryfast", sprites })
    }

    fn encode(rungs: &[PlannedRung], src: &SourceInfo, sprites: &Sprites) -> Vec<String> {
        encode_clamped(rungs, src, sprites, None)
    }

    #[test]
    fn one_process_encodes_every_rung_from_one_split() {
        let rungs = "720p=3000k,360p=365k".parse::<Ladder>().unwrap().plan(1280, 720);
        let src = source(true);
        let sprites = Sprites::plan(&src);
        let a = encode(&rungs, &src, &sprites);
        let joined = a.join(" ");
        assert!(joined.contains("[0:v]split=4[s0][s1][sp][st]"));
        assert!(joined.contains(&format!("[st]{}[thumbs]", sprites.filter())));
        assert!(joined.contains("scale=1280:720") && joined.contains("scale=640:360"));
        assert!(joined.contains("-g 60 -keyint_min 60"));
        assert!(joined.contains("-sc_threshold 0"));
        assert!(joined.contains("-bf 0"), "no reordered frames: video starts at 0 without an edit list");
        assert!(joined.contains("expr:gte(t,n_forced*2)"));
        assert!(joined.contains("-b:v:1 365k"));
        assert!(joined.contains("v:0,name:720p v:1,name:360p a:0,name:audio"), "video rungs and one audio rendition");
        assert_eq!(a.iter().filter(|x| *x == "0:a:0").count(), 1, "audio is encoded once");
        assert_eq!(a.iter().filter(|x| *x == "-i").count(), 1, "exactly one input, decoded once");
        assert!(joined.contains("-protocol_whitelist file -format_whitelist mov,") && joined.contains("-f mov -enable_drefs 0 -i file:/in"), "confined input: {joined}");
    }

    #[test]
    fn a_fast_source_is_clamped_before_the_split_and_gops_follow_the_clamped_rate() {
        let rungs = "360p=365k".parse::<Ladder>().unwrap().plan(640, 360);
        let src = SourceInfo { width: 640, height: 360, frame_rate: 240.0, duration: 5.0, has_audio: false };
        let joined = encode_clamped(&rungs, &src, &Sprites::plan(&src), Some(60.0)).join(" ");
        assert!(joined.contains("[0:v]fps=60,split=3"), "{joined}");
        assert!(joined.contains("-g 120 -keyint_min 120"), "{joined}");
    }

    /// ffmpeg reports progress only once every output has started; an output
    /// whose first frame comes late (a full sheet, a poster 10 % in) hid it.
    #[test]
    fn every_output_starts_at_the_first_frame() {
        let rungs = "720p=3000k,360p=365k".parse::<Ladder>().unwrap().plan(1280, 720);
        let src = source(true);
        let joined = encode(&rungs, &src, &Sprites::plan(&src)).join(" ");
        assert!(joined.contains("[sp]select='eq(n\\,0)+gte(t\\,2.000)*lt(prev_selected_t\\,2.000)',scale=1280:720,setsar=1[poster]"), "{joined}");
        assert!(joined.contains("-fps_mode passthrough -frames:v 2 -update 1 /out/poster.jpg"));
        assert!(!joined.contains("tile="));
    }

    #[test]
    fn silent_sources_map_no_audio() {
        let rungs = "360p=365k".parse::<Ladder>().unwrap().plan(640, 360);
        let src = source(false);
        let a = encode(&rungs, &src, &Sprites::plan(&src)).join(" ");
        assert!(!a.contains("0:a:0") && !a.contains("-c:a") && !a.contains("name:audio"));
        assert!(a.contains("-var_stream_map v:0,name:360p "));
    }

    #[test]
    fn progress_blocks_are_parsed() {
        let mut p = Progress::default();
        for l in ["frame=10", "fps=29.5", "out_time_us=4000000", "speed=1.52x"] {
            assert!(!parse_progress_line(l, &mut p));
        }
        assert!(parse_progress_line("progress=continue", &mut p));
        assert_eq!(p, Progress { out_seconds: 4.0, fps: 29.5, speed: 1.52 });
    }
}
