//! ffprobe: is the upload a video in an allowed container, and what are its
//! size, rate and length? ffprobe runs confined ([`crate::confine`]) and
//! under a timeout. Anything it cannot read, any demuxer off the allowlist,
//! or no real video stream is a permanent failure from the catalogue
//! ([`Rejection`]); ffprobe's own words only reach the logs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::confine::Confinement;
use crate::job::{Failure, JobError};
use crate::rejection::Rejection;

#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Display size: coded size with any 90° rotation applied.
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub duration: f64,
    pub has_audio: bool,
}

/// What the probe learnt: the media, and the demuxer ffmpeg must be forced to.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    pub source: SourceInfo,
    pub demuxer: String,
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
    format_name: Option<String>,
    duration: Option<String>,
}

fn rate(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// A claimed rate above this is a broken header, not a camera.
const MAX_CLAIMED_FPS: f64 = 1000.0;

/// Still-image codecs: a PNG renamed .mp4 has a "video stream" but is no video.
const IMAGE_CODECS: &[&str] = &["png", "mjpeg", "bmp", "gif", "webp", "tiff"];

pub fn parse(json: &[u8], confinement: &Confinement) -> Result<Probed, JobError> {
    let out: Output = serde_json::from_slice(json).map_err(|e| JobError::Transient(Failure::Internal, anyhow::anyhow!("unreadable ffprobe output: {e}")))?;
    let format_name = out.format.as_ref().and_then(|f| f.format_name.as_deref()).unwrap_or("");
    let demuxer = confinement.check_format(format_name)?;
    let video = out
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                && s.disposition.attached_pic == 0
                && !IMAGE_CODECS.contains(&s.codec_name.as_deref().unwrap_or(""))
        })
        .ok_or(Rejection::NoVideoStream)?;
    let (w, h) = match (video.width, video.height) {
        (Some(w), Some(h)) if w >= 16 && h >= 16 => (w, h),
        _ => return Err(Rejection::NoDimensions.into()),
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
        .filter(|r| *r <= MAX_CLAIMED_FPS)
        .ok_or(Rejection::NoFrameRate)?;
    let duration = out
        .format
        .as_ref()
        .and_then(|f| f.duration.as_deref())
        .or(video.duration.as_deref())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or(Rejection::NoDuration)?;
    let has_audio = out.streams.iter().any(|s| s.codec_type.as_deref() == Some("audio"));
    Ok(Probed { source: SourceInfo { width, height, frame_rate, duration, has_audio }, demuxer })
}

/// Runs ffprobe confined and under `timeout`. Its stderr is logged, never shown.
pub async fn run(ffprobe: &str, input: &Path, confinement: &Confinement, timeout: Duration) -> Result<Probed, JobError> {
    let mut cmd = Command::new(ffprobe);
    cmd.args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .args(confinement.input_args(None))
        .arg(Confinement::input_url(input))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    confinement.apply(&mut cmd);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Err(Rejection::ProbeTimedOut { secs: timeout.as_secs() }.into()),
        Ok(out) => out.map_err(|e| JobError::Transient(Failure::Internal, anyhow::anyhow!("cannot run {ffprobe}: {e}")))?,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        tracing::warn!(stderr = %stderr.trim(), "ffprobe refused the source");
        // The whitelist's own refusal names the demuxer it stopped: say which.
        if let Some(format) = stderr.lines().find(|l| l.contains("Format not on whitelist")).and_then(refused_demuxer) {
            return Err(Rejection::FormatNotAllowed { format }.into());
        }
        return Err(Rejection::NotMedia.into());
    }
    parse(&out.stdout, confinement)
}

/// `[dash @ 0x55…] Format not on whitelist '…'` → `dash`.
fn refused_demuxer(line: &str) -> Option<String> {
    let name = line.strip_prefix('[')?.split(" @ ").next()?;
    let name = name.split(',').next()?.trim();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::{NetworkIsolation, DEFAULT_FORMATS};

    fn probe(json: &[u8]) -> Result<SourceInfo, JobError> {
        parse(json, &Confinement::new(DEFAULT_FORMATS, NetworkIsolation::Off).unwrap()).map(|p| p.source)
    }

    fn rejection(r: Result<SourceInfo, JobError>) -> &'static str {
        match r {
            Err(JobError::Permanent(why)) => why.code(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_rotated_phone_video_reports_display_dimensions() {
        let j = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"30000/1001",
            "side_data_list":[{"rotation":-90}]},{"codec_type":"audio"}],"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"12.5"}}"#;
        let s = probe(j).unwrap();
        assert_eq!((s.width, s.height), (1080, 1920));
        assert!((s.frame_rate - 29.97).abs() < 0.01);
        assert!(s.has_audio);
        assert_eq!(s.duration, 12.5);
    }

    #[test]
    fn audio_only_and_still_images_are_permanent_failures() {
        let audio = br#"{"streams":[{"codec_type":"audio"}],"format":{"format_name":"matroska,webm","duration":"3"}}"#;
        assert_eq!(rejection(probe(audio)), "no_video_stream");
        let png = br#"{"streams":[{"codec_type":"video","codec_name":"png","width":100,"height":100,"avg_frame_rate":"25/1"}],"format":{"format_name":"mov,mp4"}}"#;
        assert_eq!(rejection(probe(png)), "no_video_stream");
    }

    #[test]
    fn a_missing_or_absurd_duration_or_rate_is_refused() {
        let nan = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":64,"height":64,"avg_frame_rate":"25/1"}],"format":{"format_name":"mov","duration":"nan"}}"#;
        assert_eq!(rejection(probe(nan)), "no_duration");
        let fast = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":64,"height":64,"avg_frame_rate":"90000/1"}],"format":{"format_name":"mov","duration":"2"}}"#;
        assert_eq!(rejection(probe(fast)), "no_frame_rate");
    }

    /// A manifest probes fine as its own format; the allowlist refuses it.
    #[test]
    fn a_probed_manifest_is_refused_by_name() {
        let dash = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":320,"height":240,"avg_frame_rate":"25/1"}],"format":{"format_name":"dash","duration":"2"}}"#;
        assert_eq!(rejection(probe(dash)), "format_not_allowed");
        assert_eq!(refused_demuxer("[dash @ 0x55cb003da280] Format not on whitelist 'mov,mp4'").as_deref(), Some("dash"));
        assert_eq!(refused_demuxer("[hls @ 0x1] Format not on whitelist 'x'").as_deref(), Some("hls"));
        assert_eq!(refused_demuxer("garbage"), None);
    }
}
