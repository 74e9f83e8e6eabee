//! The DASH manifest (MPD) over the very CMAF segments HLS plays: one video
//! adaptation set with a representation per rung, one audio set. Segment
//! times come from the media playlists (`SegmentTimeline`, milliseconds,
//! accumulated before rounding so there is no drift), segment names follow
//! ffmpeg's `seg_%05d.m4s` numbering from 0.

use anyhow::bail;

use crate::package::{RenditionOutput, Track};

pub const MANIFEST: &str = "manifest.mpd";

fn iso_duration(secs: f64) -> String {
    format!("PT{secs:.3}S")
}

/// `<SegmentTemplate>` with its timeline; fails if the names are not numbered from 0.
fn template(r: &RenditionOutput) -> anyhow::Result<String> {
    for (i, (_, name)) in r.segments.iter().enumerate() {
        if name != &format!("seg_{i:05}.m4s") {
            bail!("segment {i} of {} is named {name:?}, not seg_{i:05}.m4s", r.name);
        }
    }
    let mut timeline = String::new();
    let mut at_secs = 0.0;
    let mut runs: Vec<(u64, u64, u32)> = Vec::new(); // (start ms, duration ms, repeats)
    for (secs, _) in &r.segments {
        let start = (at_secs * 1000.0f64).round() as u64;
        at_secs += secs;
        let d = (at_secs * 1000.0f64).round() as u64 - start;
        match runs.last_mut() {
            Some((_, last, repeat)) if *last == d => *repeat += 1,
            _ => runs.push((start, d, 0)),
        }
    }
    for (i, (t, d, r)) in runs.iter().enumerate() {
        let t = if i == 0 { format!(" t=\"{t}\"") } else { String::new() };
        let r = if *r > 0 { format!(" r=\"{r}\"") } else { String::new() };
        timeline.push_str(&format!("<S{t} d=\"{d}\"{r}/>"));
    }
    Ok(format!(
        "<SegmentTemplate timescale=\"1000\" initialization=\"{n}/{init}\" media=\"{n}/seg_$Number%05d$.m4s\" startNumber=\"0\"><SegmentTimeline>{timeline}</SegmentTimeline></SegmentTemplate>",
        n = r.name,
        init = r.init
    ))
}

pub fn manifest(video: &[RenditionOutput], audio: Option<&RenditionOutput>, frame_rate: f64) -> anyhow::Result<String> {
    let duration = video.iter().chain(audio).map(|r| r.duration).fold(0.0, f64::max);
    let mut m = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\" \
type=\"static\" mediaPresentationDuration=\"{}\" minBufferTime=\"PT2S\">\n<Period id=\"0\" start=\"PT0S\">\n",
        iso_duration(duration)
    );
    let fps = format!("{}", (frame_rate * 1000.0).round() / 1000.0);
    m.push_str(&format!(
        "<AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\" frameRate=\"{fps}\">\n"
    ));
    for r in video {
        let Track::Video(rung) = &r.track else { continue };
        m.push_str(&format!(
            "<Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{}\" height=\"{}\" sar=\"1:1\">{}</Representation>\n",
            r.name,
            r.bandwidth,
            r.codecs,
            rung.width,
            rung.height,
            template(r)?
        ));
    }
    m.push_str("</AdaptationSet>\n");
    if let Some(a) = audio {
        m.push_str(&format!(
            "<AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"und\" segmentAlignment=\"true\" startWithSAP=\"1\">\n\
<Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"48000\">\
<AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"2\"/>{}</Representation>\n</AdaptationSet>\n",
            a.name,
            a.bandwidth,
            a.codecs,
            template(a)?
        ));
    }
    m.push_str("</Period>\n</MPD>\n");
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::PlannedRung;

    fn rendition(track: Track, name: &str, durations: &[f64]) -> RenditionOutput {
        RenditionOutput {
            name: name.into(),
            track,
            dir: Default::default(),
            init: "init_0.mp4".into(),
            segments: durations.iter().enumerate().map(|(i, d)| (*d, format!("seg_{i:05}.m4s"))).collect(),
            files: vec![],
            codecs: "avc1.64001f".into(),
            bandwidth: 1_000_000,
            average_bandwidth: 900_000,
            duration: durations.iter().sum(),
            iframes: None,
        }
    }

    #[test]
    fn the_timeline_repeats_equal_segments_and_does_not_drift() {
        let r = rendition(Track::Audio, "audio", &[6.016, 5.994667, 6.016, 1.024]);
        let t = template(&r).unwrap();
        // 0 → 6016 → 12011 → 18027 → 19051
        assert!(t.contains("<S t=\"0\" d=\"6016\"/><S d=\"5995\"/><S d=\"6016\"/><S d=\"1024\"/>"), "{t}");
        let v = rendition(Track::Video(PlannedRung { name: "360p".into(), width: 640, height: 360, video_kbps: 365 }), "360p", &[6.0, 6.0, 6.0, 2.0]);
        assert!(template(&v).unwrap().contains("<S t=\"0\" d=\"6000\" r=\"2\"/><S d=\"2000\"/>"));
    }

    #[test]
    fn the_manifest_lists_both_adaptation_sets() {
        let v = rendition(Track::Video(PlannedRung { name: "360p".into(), width: 640, height: 360, video_kbps: 365 }), "360p", &[6.0, 2.0]);
        let a = rendition(Track::Audio, "audio", &[6.0, 2.0]);
        let m = manifest(std::slice::from_ref(&v), Some(&a), 30.0).unwrap();
        assert!(m.contains("mediaPresentationDuration=\"PT8.000S\""));
        assert!(m.contains("<Representation id=\"360p\" bandwidth=\"1000000\" codecs=\"avc1.64001f\" width=\"640\" height=\"360\""));
        assert!(m.contains("initialization=\"360p/init_0.mp4\" media=\"360p/seg_$Number%05d$.m4s\""));
        assert!(m.contains("contentType=\"audio\""));
    }

    #[test]
    fn unexpected_segment_names_are_refused() {
        let mut r = rendition(Track::Audio, "audio", &[6.0]);
        r.segments[0].1 = "chunk-1.m4s".into();
        assert!(template(&r).is_err());
    }
}
