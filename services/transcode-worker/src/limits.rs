//! What one source may cost the worker: its size, shape, rate and length,
//! the pixels it makes ffmpeg decode, and how long its probe and encode may
//! run. Checked right after the probe, before any encode starts, so a
//! hostile header costs one ffprobe and no more.
//!
//! Frame rates above the limit are clamped rather than refused: 240 fps
//! slow motion from a phone is a real upload, and players want 60 at most.

use std::time::Duration;

use crate::probe::SourceInfo;
use crate::rejection::Rejection;

#[derive(Debug, Clone, PartialEq)]
pub struct SourceLimits {
    /// The longer side, whatever the orientation.
    pub max_long_side: u32,
    /// The shorter side.
    pub max_short_side: u32,
    /// Longer side over shorter side. It also bounds the sprite tiler:
    /// a 16x4096 source would make each thumbnail 160x40960.
    pub max_aspect: f64,
    /// Output frame rate; faster sources are clamped to it.
    pub max_fps: f64,
    pub max_duration_secs: f64,
    /// Width x height x source fps x duration: what the decode costs.
    pub max_pixels: f64,
    pub probe_timeout: Duration,
    /// The encode may run this many times the source's duration…
    pub deadline_factor: f64,
    /// …but never less than this (short clips, slow presets, a busy host).
    pub deadline_min: Duration,
}

impl Default for SourceLimits {
    fn default() -> Self {
        Self {
            max_long_side: 7680,
            max_short_side: 4320,
            max_aspect: 4.0,
            max_fps: 60.0,
            max_duration_secs: 24.0 * 3600.0,
            // An hour of 4K at 60 fps, about 1.8e12.
            max_pixels: 2e12,
            probe_timeout: Duration::from_secs(30),
            deadline_factor: 10.0,
            deadline_min: Duration::from_secs(600),
        }
    }
}

impl SourceLimits {
    /// Refuses a source over any limit; the first one it fails is the reason.
    pub fn check(&self, s: &SourceInfo) -> Result<(), Rejection> {
        let (long, short) = (s.width.max(s.height), s.width.min(s.height));
        if long > self.max_long_side || short > self.max_short_side {
            let (max_width, max_height) = (self.max_long_side, self.max_short_side);
            return Err(Rejection::TooLarge { width: s.width, height: s.height, max_width, max_height });
        }
        if long as f64 > short as f64 * self.max_aspect {
            return Err(Rejection::AspectRatio { width: s.width, height: s.height, max: self.max_aspect });
        }
        if s.duration > self.max_duration_secs {
            return Err(Rejection::TooLong { secs: s.duration, max: self.max_duration_secs });
        }
        let pixels = s.width as f64 * s.height as f64 * s.frame_rate * s.duration;
        if pixels > self.max_pixels {
            return Err(Rejection::TooManyPixels { pixels, max: self.max_pixels });
        }
        Ok(())
    }

    /// The frame rate the outputs get: the source's, or the limit if lower.
    pub fn output_fps(&self, s: &SourceInfo) -> Option<f64> {
        (s.frame_rate > self.max_fps).then_some(self.max_fps)
    }

    /// How long the encode of a source this long may run in all.
    pub fn encode_deadline(&self, duration_secs: f64) -> Duration {
        Duration::from_secs_f64((duration_secs * self.deadline_factor).min(1e9)).max(self.deadline_min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(width: u32, height: u32, frame_rate: f64, duration: f64) -> SourceInfo {
        SourceInfo { width, height, frame_rate, duration, has_audio: false }
    }

    #[test]
    fn ordinary_sources_pass_in_both_orientations() {
        let l = SourceLimits::default();
        for s in [src(1920, 1080, 30.0, 600.0), src(1080, 1920, 60.0, 60.0), src(7680, 4320, 30.0, 60.0), src(2560, 1080, 24.0, 5400.0)] {
            assert_eq!(l.check(&s), Ok(()), "{s:?}");
        }
    }

    #[test]
    fn each_limit_is_its_own_reason() {
        let l = SourceLimits::default();
        assert_eq!(l.check(&src(8192, 4320, 30.0, 1.0)).unwrap_err().code(), "too_large");
        assert_eq!(l.check(&src(4400, 4400, 30.0, 1.0)).unwrap_err().code(), "too_large");
        assert_eq!(l.check(&src(16, 4096, 30.0, 1.0)).unwrap_err().code(), "aspect_ratio");
        assert_eq!(l.check(&src(640, 360, 30.0, 90_000.0)).unwrap_err().code(), "too_long");
        assert_eq!(l.check(&src(3840, 2160, 60.0, 9000.0)).unwrap_err().code(), "too_many_pixels");
    }

    #[test]
    fn fast_sources_are_clamped_not_refused() {
        let l = SourceLimits::default();
        assert_eq!(l.output_fps(&src(1920, 1080, 240.0, 10.0)), Some(60.0));
        assert_eq!(l.output_fps(&src(1920, 1080, 59.94, 10.0)), None);
        assert_eq!(l.check(&src(1920, 1080, 240.0, 10.0)), Ok(()));
    }

    #[test]
    fn deadlines_scale_with_duration_from_a_floor() {
        let l = SourceLimits::default();
        assert_eq!(l.encode_deadline(5.0), Duration::from_secs(600));
        assert_eq!(l.encode_deadline(3600.0), Duration::from_secs(36_000));
        assert!(l.encode_deadline(f64::MAX) > Duration::from_secs(36_000));
    }
}
