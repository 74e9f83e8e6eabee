//! The catalogue of reasons a source is refused for good. A creator sees
//! the message; operators and clients can match on the stable code. What
//! ffmpeg or ffprobe printed never reaches the creator: it can name paths on
//! the worker's disk, and it means nothing to a person. It stays in the logs.

use std::fmt;

/// Why a source can never be transcoded. Each variant's code is stable.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// ffprobe could not read it as any allowed container.
    NotMedia,
    /// Readable, but by a demuxer that is not allowed (a playlist, a manifest, an image sequence…).
    FormatNotAllowed { format: String },
    /// ffprobe did not answer in time: a pathological file.
    ProbeTimedOut { secs: u64 },
    NoVideoStream,
    NoDimensions,
    TooLarge { width: u32, height: u32, max_width: u32, max_height: u32 },
    AspectRatio { width: u32, height: u32, max: f64 },
    NoFrameRate,
    NoDuration,
    TooLong { secs: f64, max: f64 },
    /// Width × height × frames over the worker's per-job pixel budget.
    TooManyPixels { pixels: f64, max: f64 },
    /// ffmpeg exited with an error: the stream does not decode.
    Undecodable,
    /// The encode overran its wall-clock deadline (a multiple of the duration).
    TooSlow { secs: u64 },
    /// ffmpeg succeeded but the frames end before the stated duration.
    FramesEndEarly { duration: f64 },
    /// Several workers died on this source.
    CrashLoop { workers: i64 },
}

impl Rejection {
    /// A stable machine-readable code, as tusd's `ERR_…` codes are.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotMedia => "not_media",
            Rejection::FormatNotAllowed { .. } => "format_not_allowed",
            Rejection::ProbeTimedOut { .. } => "probe_timed_out",
            Rejection::NoVideoStream => "no_video_stream",
            Rejection::NoDimensions => "no_dimensions",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::AspectRatio { .. } => "aspect_ratio",
            Rejection::NoFrameRate => "no_frame_rate",
            Rejection::NoDuration => "no_duration",
            Rejection::TooLong { .. } => "too_long",
            Rejection::TooManyPixels { .. } => "too_many_pixels",
            Rejection::Undecodable => "undecodable",
            Rejection::TooSlow { .. } => "too_slow",
            Rejection::FramesEndEarly { .. } => "frames_end_early",
            Rejection::CrashLoop { .. } => "crash_loop",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotMedia => write!(f, "not a media file: the upload is not a video container this platform reads (MP4, MOV, MKV, WebM, AVI, FLV, MPEG-TS, MPEG-PS, WMV, Ogg or MXF)"),
            Rejection::FormatNotAllowed { format } => write!(
                f,
                "the upload is a {format} file, which is not accepted: playlists, manifests and image sequences can point at other files; upload the video itself (MP4, MOV, MKV, WebM…)"
            ),
            Rejection::ProbeTimedOut { secs } => write!(f, "the file could not be examined within {secs} s; re-export it with a standard encoder and upload it again"),
            Rejection::NoVideoStream => write!(f, "the file has no video stream (audio-only or still image); upload a video file"),
            Rejection::NoDimensions => write!(f, "the video stream has no usable dimensions"),
            Rejection::TooLarge { width, height, max_width, max_height } => {
                write!(f, "the video is {width}x{height}; at most {max_width}x{max_height} (either orientation) is accepted")
            }
            Rejection::AspectRatio { width, height, max } => {
                write!(f, "the video is {width}x{height}, an aspect ratio over {max}:1; crop or pad it and upload it again")
            }
            Rejection::NoFrameRate => write!(f, "the video stream has no usable frame rate"),
            Rejection::NoDuration => write!(f, "the video has no duration; is it a complete file?"),
            Rejection::TooLong { secs, max } => write!(f, "the video claims to last {secs:.0} s; videos over {max:.0} s are not accepted"),
            Rejection::TooManyPixels { pixels, max } => write!(
                f,
                "the video has {:.1} billion pixels to encode (size x frame rate x duration); the limit is {:.1} billion: upload it shorter or at a lower resolution",
                pixels / 1e9,
                max / 1e9
            ),
            Rejection::Undecodable => write!(f, "the video could not be decoded: the file is damaged or uses a codec this platform cannot read; re-export it and upload it again"),
            Rejection::TooSlow { secs } => write!(f, "the video took over {secs} s to transcode, longer than its length allows; re-export it with a standard encoder and upload it again"),
            Rejection::FramesEndEarly { duration } => write!(
                f,
                "the video's frames end before its stated duration of {duration:.1} s; re-export the file and upload it again"
            ),
            Rejection::CrashLoop { workers } => write!(
                f,
                "{workers} workers stopped (killed or crashed) while transcoding this video, so it is not tried again; the source may be too large or malformed for this worker"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_tool_output_and_codes_are_distinct() {
        let all = [
            Rejection::NotMedia,
            Rejection::FormatNotAllowed { format: "dash".into() },
            Rejection::ProbeTimedOut { secs: 30 },
            Rejection::NoVideoStream,
            Rejection::NoDimensions,
            Rejection::TooLarge { width: 1, height: 2, max_width: 3, max_height: 4 },
            Rejection::AspectRatio { width: 16, height: 4096, max: 4.0 },
            Rejection::NoFrameRate,
            Rejection::NoDuration,
            Rejection::TooLong { secs: 1e9, max: 86400.0 },
            Rejection::TooManyPixels { pixels: 3e12, max: 2e12 },
            Rejection::Undecodable,
            Rejection::TooSlow { secs: 600 },
            Rejection::FramesEndEarly { duration: 3.0 },
            Rejection::CrashLoop { workers: 3 },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(Rejection::code).collect();
        assert_eq!(codes.len(), all.len());
        for r in &all {
            let m = r.to_string();
            assert!(!m.contains('/'), "no paths: {m}");
        }
        assert!(Rejection::FormatNotAllowed { format: "dash".into() }.to_string().contains("dash file"));
    }
}
