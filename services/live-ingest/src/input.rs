//! What an ingest really is, and whether it is within the configured
//! maximum (`LIVE_MAX_INPUT_HEIGHT`, `LIVE_MAX_INPUT_FPS`).
//!
//! A publisher need not send `onMetaData`, and what it says there need not
//! be true, so three witnesses are heard and the first one over the limit
//! refuses: the metadata, the sequence parameter set in the AVC sequence
//! header (the size the decoder will really be given, parsed by the
//! `h264-reader` crate: exp-Golomb fields, scaling lists and cropping are
//! not worth writing again), and the video timestamps of the first two seconds (the
//! rate frames really arrive at). The SPS height also picks the ladder's
//! rungs, so a source without metadata is never scaled up.

use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use rml_rtmp::sessions::StreamMetadata;

use crate::configuration::InputLimits;

/// Media time over which the frame rate is measured.
const RATE_WINDOW_MS: u32 = 2_000;

/// Why an ingest is over the limits, for the log and the refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit(pub String);

/// Size and rate of one publish, as far as seen.
#[derive(Debug, Default)]
pub struct Input {
    /// Coded picture size from the SPS (cropped), when a sequence header came.
    pub size: Option<(u32, u32)>,
    first_frame: Option<u32>,
    frames: u32,
    rate_checked: bool,
}

impl Input {
    /// The publisher's `onMetaData`.
    pub fn metadata(limits: &InputLimits, m: &StreamMetadata) -> Result<(), OverLimit> {
        if let Some(h) = m.video_height.filter(|h| *h > limits.max_height) {
            return Err(OverLimit(format!("ingest height {h} (onMetaData) is over the limit of {}", limits.max_height)));
        }
        if let Some(f) = m.video_frame_rate.filter(|f| over_rate(limits, f64::from(*f))) {
            return Err(OverLimit(format!("ingest frame rate {f} (onMetaData) is over the limit of {}", limits.max_fps)));
        }
        Ok(())
    }

    /// An AVC sequence header's tag body (`0x17 0x00` + composition time + avcC).
    /// One that cannot be parsed is left to the encoder, which fails on it
    /// with its own reason; only a readable SPS over the limits refuses.
    pub fn sequence_header(&mut self, limits: &InputLimits, body: &[u8]) -> Result<(), OverLimit> {
        let Some(sps) = body.get(5..).and_then(first_sps) else { return Ok(()) };
        let Ok((w, h)) = sps.pixel_dimensions() else { return Ok(()) };
        self.size = Some((w, h));
        if h > limits.max_height {
            return Err(OverLimit(format!("ingest height {h} (H.264 SPS, {w}×{h}) is over the limit of {}", limits.max_height)));
        }
        // The SPS's timing is a clock tick, a frame rate only with
        // fixed_frame_rate_flag, which encoders set loosely: the measured
        // rate is the witness for that.
        Ok(())
    }

    /// A video frame's timestamp (ms). Checks the rate once, after the first
    /// two seconds of media; timestamps going backwards in that window are
    /// left to the encoder's resync.
    pub fn frame(&mut self, limits: &InputLimits, ts: u32) -> Result<(), OverLimit> {
        if self.rate_checked {
            return Ok(());
        }
        let first = *self.first_frame.get_or_insert(ts);
        let span = ts.wrapping_sub(first);
        if span > 10 * RATE_WINDOW_MS {
            // A jump, not a rate: measure again from here.
            (self.first_frame, self.frames) = (Some(ts), 1);
            return Ok(());
        }
        self.frames += 1;
        if span < RATE_WINDOW_MS {
            return Ok(());
        }
        self.rate_checked = true;
        let fps = f64::from(self.frames - 1) * 1000.0 / f64::from(span);
        if over_rate(limits, fps) {
            return Err(OverLimit(format!("ingest frame rate {fps:.1} (measured over {span} ms of timestamps) is over the limit of {}", limits.max_fps)));
        }
        Ok(())
    }
}

/// Over the limit by more than timestamp rounding and NTSC rates explain (59.94 passes 60).
fn over_rate(limits: &InputLimits, fps: f64) -> bool {
    fps > f64::from(limits.max_fps) * 1.02 + 0.5
}

fn first_sps(avcc: &[u8]) -> Option<SeqParameterSet> {
    let record = AvcDecoderConfigurationRecord::try_from(avcc).ok()?;
    let nal = record.sequence_parameter_sets().next()?.ok()?;
    SeqParameterSet::from_bits(RefNal::new(nal, &[], true).rbsp_bits()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> InputLimits {
        InputLimits { max_height: 720, max_fps: 30.0 }
    }

    /// Frames every `step` ms for `ms` of media.
    fn feed(step: u32, ms: u32) -> Result<(), OverLimit> {
        let mut i = Input::default();
        (0..=ms / step).try_for_each(|n| i.frame(&limits(), 1_000 + n * step))
    }

    #[test]
    fn the_measured_rate_refuses_what_metadata_did_not_say() {
        // 30 fps as RTMP's whole milliseconds give it (33, 33, 34…) passes; 60 does not.
        assert!(feed(33, 3_000).is_ok());
        assert!(feed(17, 3_000).unwrap_err().0.contains("measured over"));
        // Under two seconds nothing is decided.
        assert!(feed(10, 1_500).is_ok());
    }

    #[test]
    fn ntsc_rates_pass_their_round_limit() {
        assert!(!over_rate(&limits(), 29.97));
        assert!(over_rate(&limits(), 50.0));
    }

    #[test]
    fn metadata_over_the_limits_is_refused_with_the_figure() {
        let mut m = StreamMetadata::new();
        m.video_height = Some(2160);
        assert!(Input::metadata(&limits(), &m).unwrap_err().0.contains("2160"));
        m.video_height = Some(720);
        m.video_frame_rate = Some(60.0);
        assert!(Input::metadata(&limits(), &m).unwrap_err().0.contains("frame rate 60"));
    }

    #[test]
    fn unreadable_sequence_headers_are_left_to_the_encoder() {
        let mut i = Input::default();
        assert!(i.sequence_header(&limits(), &[0x17, 0, 0, 0, 0, 1, 2, 3]).is_ok());
        assert!(i.sequence_header(&limits(), &[0x17]).is_ok());
        assert_eq!(i.size, None);
    }
}
