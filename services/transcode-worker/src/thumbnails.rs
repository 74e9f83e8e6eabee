//! Scrubbing thumbnails: small frames at a fixed interval, written one by
//! one by the main ffmpeg pass (so they start with it; see [`crate::ffmpeg`])
//! and tiled into JPEG sprite sheets by a second, tiny pass over those
//! frames ([`sheets_args`]), and a WebVTT track whose cues
//! point into the sheets with media fragments (`sprite_000.jpg#xywh=…`),
//! the format video.js, Shaka, JW Player and Vidstack read.
//!
//! The interval grows with the duration so a long film gets at most about
//! `MAX_THUMBS` frames. ffmpeg's `fps=1/I` emits ceil(duration / I) frames
//! (frames at 0, I, 2I…), which is the cue count here.

use std::path::{Path, PathBuf};

use crate::probe::SourceInfo;

pub const THUMB_WIDTH: u32 = 160;
pub const COLUMNS: u32 = 10;
pub const ROWS: u32 = 10;
pub const MAX_THUMBS: f64 = 300.0;
/// Sheets as ffmpeg's image2 muxer names them (`-start_number 0`).
pub const SHEET_PATTERN: &str = "sprite_%03d.jpg";
/// The single frames the main pass writes, lossless so the sheets are
/// compressed once.
pub const THUMB_PATTERN: &str = "thumbs/%05d.png";
pub const VTT_FILE: &str = "thumbnails.vtt";

#[derive(Debug, Clone, PartialEq)]
pub struct Sprites {
    pub interval: u32,
    pub count: u32,
    pub width: u32,
    pub height: u32,
}

impl Sprites {
    pub fn plan(source: &SourceInfo) -> Self {
        let interval = ((source.duration / MAX_THUMBS).ceil() as u32).clamp(1, 60);
        let count = ((source.duration / interval as f64).ceil() as u32).max(1);
        let height = ((THUMB_WIDTH as f64 * source.height as f64 / source.width as f64 / 2.0).round() as u32 * 2).max(2);
        Self { interval, count, width: THUMB_WIDTH, height }
    }

    /// The main pass's filter: one small frame per interval.
    pub fn filter(&self) -> String {
        format!("fps=1/{},scale={}:{},setsar=1", self.interval, self.width, self.height)
    }

    /// The thumbnails folder the main pass writes into.
    pub fn frames_dir(out_dir: &Path) -> PathBuf {
        out_dir.join(Path::new(THUMB_PATTERN).parent().expect("pattern has a folder"))
    }

    /// The second pass: the frames, in order, tiled into sheets; the last
    /// sheet is padded, as its unused cells have no cues.
    pub fn sheets_args(out_dir: &Path) -> Vec<String> {
        let mut a = crate::ffmpeg::common_args();
        a.extend(["-framerate", "1", "-start_number", "0", "-f", "image2", "-i"].map(String::from));
        a.push(out_dir.join(THUMB_PATTERN).display().to_string());
        a.extend(["-vf", &format!("tile={COLUMNS}x{ROWS}"), "-c:v", "mjpeg", "-q:v", "5", "-start_number", "0", "-f", "image2"].map(String::from));
        a.push(out_dir.join(SHEET_PATTERN).display().to_string());
        a
    }

    pub fn sheets(&self) -> u32 {
        self.count.div_ceil(COLUMNS * ROWS)
    }

    pub fn sheet_name(i: u32) -> String {
        format!("sprite_{i:03}.jpg")
    }

    /// The WebVTT track; the last cue ends at `duration`.
    pub fn vtt(&self, duration: f64) -> String {
        let mut out = String::from("WEBVTT\n");
        let per_sheet = COLUMNS * ROWS;
        for i in 0..self.count {
            let start = (i * self.interval) as f64;
            let end = (((i + 1) * self.interval) as f64).min(duration).max(start + 0.001);
            let cell = i % per_sheet;
            let (x, y) = ((cell % COLUMNS) * self.width, (cell / COLUMNS) * self.height);
            out.push_str(&format!(
                "\n{} --> {}\n{}#xywh={x},{y},{},{}\n",
                timestamp(start),
                timestamp(end),
                Self::sheet_name(i / per_sheet),
                self.width,
                self.height
            ));
        }
        out
    }
}

fn timestamp(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(duration: f64) -> SourceInfo {
        SourceInfo { width: 1920, height: 1080, frame_rate: 30.0, duration, has_audio: true }
    }

    #[test]
    fn a_short_video_gets_a_thumbnail_a_second_and_cues_cover_it_all() {
        let s = Sprites::plan(&src(4.5));
        assert_eq!((s.interval, s.count, s.width, s.height, s.sheets()), (1, 5, 160, 90, 1));
        let vtt = s.vtt(4.5);
        assert!(vtt.starts_with("WEBVTT\n"));
        assert!(vtt.contains("00:00:00.000 --> 00:00:01.000\nsprite_000.jpg#xywh=0,0,160,90\n"));
        assert!(vtt.contains("00:00:04.000 --> 00:00:04.500\nsprite_000.jpg#xywh=640,0,160,90\n"));
    }

    #[test]
    fn a_long_video_spreads_its_thumbnails_over_several_sheets() {
        let s = Sprites::plan(&src(7200.0));
        assert_eq!((s.interval, s.count, s.sheets()), (24, 300, 3));
        let vtt = s.vtt(7200.0);
        assert!(vtt.contains("00:39:36.000 --> 00:40:00.000\nsprite_000.jpg#xywh=1440,810,160,90\n"));
        assert!(vtt.contains("01:59:36.000 --> 02:00:00.000\nsprite_002.jpg#xywh=1440,810,160,90\n"));
        assert_eq!(vtt.matches(" --> ").count(), 300);
    }

    #[test]
    fn portrait_thumbnails_keep_their_shape_and_even_size() {
        let s = Sprites::plan(&SourceInfo { width: 1080, height: 1920, frame_rate: 30.0, duration: 10.0, has_audio: false });
        assert_eq!((s.width, s.height), (160, 284));
    }
}
