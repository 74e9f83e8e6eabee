//! Scrubbing thumbnails: small frames at a fixed interval, written raw by
//! the main ffmpeg pass (so that output starts with it; see
//! [`crate::ffmpeg`]) and tiled here into JPEG sprite sheets
//! ([`Sprites::write_sheets`]), and a WebVTT track whose cues
//! point into the sheets with media fragments (`sprite_000.jpg#xywh=…`),
//! the format video.js, Shaka, JW Player and Vidstack read.
//!
//! The interval grows with the duration so a long film gets at most about
//! `MAX_THUMBS` frames. ffmpeg's `fps=1/I` emits ceil(duration / I) frames
//! (frames at 0, I, 2I…), which is the cue count here.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::probe::SourceInfo;

pub const THUMB_WIDTH: u32 = 160;
pub const COLUMNS: u32 = 10;
pub const ROWS: u32 = 10;
pub const MAX_THUMBS: f64 = 300.0;
/// The thumbnails as the main pass writes them: RGB24 frames, back to back,
/// so the sheets are compressed once.
pub const FRAMES_FILE: &str = "thumbs.rgb";
/// About ffmpeg's `-q:v 5` for MJPEG.
const SHEET_QUALITY: u8 = 80;
pub const VTT_FILE: &str = "thumbnails.vtt";
/// The tallest thumbnail, whatever the source's shape: one sheet holds
/// 100 of them in memory (here 160x640x3x100, about 30 MiB). The limits
/// refuse sources this narrow; this is the tiler's own bound.
pub const MAX_THUMB_HEIGHT: u32 = 4 * THUMB_WIDTH;

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
        let height = ((THUMB_WIDTH as f64 * source.height as f64 / source.width as f64 / 2.0).round() as u32 * 2).clamp(2, MAX_THUMB_HEIGHT);
        Self { interval, count, width: THUMB_WIDTH, height }
    }

    /// The main pass's filter: one small frame per interval.
    pub fn filter(&self) -> String {
        format!("fps=1/{},scale={}:{},setsar=1", self.interval, self.width, self.height)
    }

    pub fn sheets(&self) -> u32 {
        self.count.div_ceil(COLUMNS * ROWS)
    }

    pub fn sheet_name(i: u32) -> String {
        format!("sprite_{i:03}.jpg")
    }

    /// Tiles the raw frames into sheets, one sheet in memory at a time; the
    /// last sheet's unused cells stay black, as they have no cues. Returns
    /// how many sheets were written. Blocking: call it off the runtime.
    pub fn write_sheets(&self, out_dir: &Path) -> anyhow::Result<u32> {
        let (w, h) = (self.width as usize, self.height as usize);
        let frame_len = w * h * 3;
        let sheet_w = w * COLUMNS as usize;
        let mut frames = match std::fs::File::open(out_dir.join(FRAMES_FILE)) {
            Ok(f) => std::io::BufReader::new(f),
            // No frame reached the output; the check for the images says so.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(anyhow::Error::new(e).context("the thumbnail frames")),
        };
        let mut frame = vec![0u8; frame_len];
        let mut sheet = vec![0u8; frame_len * (COLUMNS * ROWS) as usize];
        let (mut cell, mut written) = (0usize, 0u32);
        loop {
            // A torn last frame (ffmpeg killed mid-write) counts as the end.
            let full = match frames.read_exact(&mut frame) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
                Err(e) => return Err(anyhow::Error::new(e).context("reading the thumbnail frames")),
            };
            if full {
                let (x, y) = (cell % COLUMNS as usize * w, cell / COLUMNS as usize * h);
                for row in 0..h {
                    let at = ((y + row) * sheet_w + x) * 3;
                    sheet[at..at + w * 3].copy_from_slice(&frame[row * w * 3..(row + 1) * w * 3]);
                }
                cell += 1;
            }
            if cell == (COLUMNS * ROWS) as usize || (!full && cell > 0) {
                let path = out_dir.join(Self::sheet_name(written));
                jpeg_encoder::Encoder::new_file(&path, SHEET_QUALITY)
                    .and_then(|e| e.encode(&sheet, sheet_w as u16, (h * ROWS as usize) as u16, jpeg_encoder::ColorType::Rgb))
                    .with_context(|| format!("writing {}", path.display()))?;
                written += 1;
                sheet.fill(0);
                cell = 0;
            }
            if !full {
                return Ok(written);
            }
        }
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

    /// Solid-colour 16x16 frames, each with its own colour, tiled and read
    /// back through ffmpeg's JPEG decoder.
    #[test]
    fn frames_are_tiled_in_order_and_a_torn_last_frame_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sprites { interval: 1, count: 103, width: 16, height: 16 };
        // 125 colours, any two at least 60 apart in some channel.
        let colour = |i: usize| [(i % 5 * 60) as u8, (i / 5 % 5 * 60) as u8, (i / 25 % 5 * 60) as u8];
        let mut raw: Vec<u8> = (0..103).flat_map(|i| colour(i).repeat(16 * 16)).collect();
        raw.extend([7u8; 100]); // half a frame, as a killed ffmpeg would leave
        std::fs::write(dir.path().join(FRAMES_FILE), raw).unwrap();
        assert_eq!(s.write_sheets(dir.path()).unwrap(), 2);

        for (sheet, first) in [(0, 0usize), (1, 100)] {
            let out = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(dir.path().join(Sprites::sheet_name(sheet)))
                .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout.len(), 160 * 160 * 3, "a 10x10 sheet of 16x16 cells");
            let cells = if sheet == 0 { 100 } else { 3 };
            for cell in 0..100 {
                // The centre of the cell, away from JPEG block edges.
                let (x, y) = (cell % 10 * 16 + 8, cell / 10 * 16 + 8);
                let px = &out.stdout[(y * 160 + x) * 3..][..3];
                let want = if cell < cells { colour(first + cell) } else { [0, 0, 0] };
                assert!(px.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12), "sheet {sheet} cell {cell}: {px:?} vs {want:?}");
            }
        }
        assert!(!dir.path().join(Sprites::sheet_name(2)).exists());
    }

    #[test]
    fn no_frames_make_no_sheets() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Sprites::plan(&src(10.0)).write_sheets(dir.path()).unwrap(), 0);
    }

    #[test]
    fn a_needle_shaped_source_cannot_make_huge_sheets() {
        let s = Sprites::plan(&SourceInfo { width: 16, height: 4096, frame_rate: 30.0, duration: 10.0, has_audio: false });
        assert_eq!((s.width, s.height), (160, MAX_THUMB_HEIGHT));
    }

    #[test]
    fn portrait_thumbnails_keep_their_shape_and_even_size() {
        let s = Sprites::plan(&SourceInfo { width: 1080, height: 1920, frame_rate: 30.0, duration: 10.0, has_audio: false });
        assert_eq!((s.width, s.height), (160, 284));
    }
}
