//! ffprobe: is the upload a video, and what are its size, rate and length?
//! Anything ffprobe cannot read, or that has no real video stream, is a
//! permanent failure with a reason a creator can understand.

use std::path::Path;

use serde::Deserialize;
use tokio::process::Command;

use crate::job::{Failure, JobError};

#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Display size: coded size with any 90° rotation applied.
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub duration: f64,
    pub has_audio: bool,
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Tags {
    rotate: Option<String>,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
}

fn rate(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// Longer than any real upload (2 GiB); a header claiming more is lying.
pub const MAX_DURATION_SECS: f64 = 24.0 * 3600.0;

/// Still-image codecs: a PNG renamed .mp4 has a "video stream" but is no video.
const IMAGE_CODECS: &[&str] = &["png", "mjpeg", "bmp", "gif", "webp", "tiff"];

pub fn parse(json: &[u8]) -> Result<SourceInfo, JobError> {
    let out: Output = serde_json::from_slice(json).map_err(|e| JobError::Transient(Failure::Internal, anyhow::anyhow!("unreadable ffprobe output: {e}")))?;
    let video = out
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                && s.disposition.attached_pic == 0
                && !IMAGE_CODECS.contains(&s.codec_name.as_deref().unwrap_or(""))
        })
        .ok_or_else(|| JobError::Permanent("the file has no video stream (audio-only or still image); upload a video file".into()))?;
    let (w, h) = match (video.width, video.height) {
        (Some(w), Some(h)) if w >= 16 && h >= 16 => (w, h),
        _ => return Err(JobError::Permanent("the video stream has no usable dimensions".into())),
    };
    let rotation = video
        .side_data_list
        .iter()
        .find_map(|s| s.rotation)
        .or_else(|| video.tags.rotate.as_deref().and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    let quarter_turn = (rotation.abs() as i64 % 180) == 90;
    let (width, height) = if quarter_turn { (h, w) } else { (w, h) };
    let frame_rate = video
        .avg_frame_rate
        .as_deref()
        .and_then(rate)
        .or_else(|| video.r_frame_rate.as_deref().and_then(rate))
        .filter(|r| *r <= 240.0)
        .ok_or_else(|| JobError::Permanent("the video stream has no usable frame rate".into()))?;
    let duration = out
        .format
        .as_ref()
        .and_then(|f| f.duration.as_deref())
        .or(video.duration.as_deref())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| JobError::Permanent("the video has no duration; is it a complete file?".into()))?;
    if duration > MAX_DURATION_SECS {
        // Also keeps every size derived from the duration (thumbnails, playlists) bounded.
        return Err(JobError::Permanent(format!("the video claims to last {duration:.0} s; videos over {MAX_DURATION_SECS:.0} s (24 h) are not accepted")));
    }
    let has_audio = out.streams.iter().any(|s| s.codec_type.as_deref() == Some("audio"));
    Ok(SourceInfo { width, height, frame_rate, duration, has_audio })
}

pub async fn run(ffprobe: &str, input: &Path) -> Result<SourceInfo, JobError> {
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(input)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| JobError::Transient(Failure::Internal, anyhow::anyhow!("cannot run {ffprobe}: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().last().unwrap_or("unknown error").rsplit(": ").next().unwrap_or("").trim().to_owned();
        return Err(JobError::Permanent(format!("not a media file: ffprobe could not read it ({why})")));
    }
    parse(&out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_phone_video_reports_display_dimensions() {
        let j = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"30000/1001",
            "side_data_list":[{"rotation":-90}]},{"codec_type":"audio"}],"format":{"duration":"12.5"}}"#;
        let s = parse(j).unwrap();
        assert_eq!((s.width, s.height), (1080, 1920));
        assert!((s.frame_rate - 29.97).abs() < 0.01);
        assert!(s.has_audio);
        assert_eq!(s.duration, 12.5);
    }

    #[test]
    fn audio_only_and_still_images_are_permanent_failures() {
        let audio = br#"{"streams":[{"codec_type":"audio"}],"format":{"duration":"3"}}"#;
        assert!(matches!(parse(audio), Err(JobError::Permanent(m)) if m.contains("no video stream")));
        let png = br#"{"streams":[{"codec_type":"video","codec_name":"png","width":100,"height":100,"avg_frame_rate":"25/1"}],"format":{}}"#;
        assert!(matches!(parse(png), Err(JobError::Permanent(_))));
    }

    #[test]
    fn an_absurd_claimed_duration_is_refused() {
        let lying = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":64,"height":64,"avg_frame_rate":"25/1"}],"format":{"duration":"1e12"}}"#;
        assert!(matches!(parse(lying), Err(JobError::Permanent(m)) if m.contains("24 h")));
        let nan = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":64,"height":64,"avg_frame_rate":"25/1"}],"format":{"duration":"nan"}}"#;
        assert!(matches!(parse(nan), Err(JobError::Permanent(_))));
    }
}
