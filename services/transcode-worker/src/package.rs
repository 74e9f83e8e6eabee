//! After ffmpeg: measure what it wrote and describe it for players.
//!
//! BANDWIDTH and AVERAGE-BANDWIDTH come from the actual segment sizes (peak
//! and mean bits per second), CODECS from the avcC box of each init segment,
//! so the master playlist states what is really there, not what was asked for.
//! A video variant's figures include the audio rendition it plays with.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::ffmpeg::AUDIO_NAME;
use crate::iframes::IFrames;
use crate::ladder::PlannedRung;

/// AAC-LC, what ffmpeg's `aac` encoder writes.
pub const AAC_CODEC: &str = "mp4a.40.2";

#[derive(Debug, Clone, PartialEq)]
pub enum Track {
    Video(PlannedRung),
    Audio,
}

/// One rendition as written to disk.
#[derive(Debug, Clone)]
pub struct RenditionOutput {
    pub name: String,
    pub track: Track,
    pub dir: PathBuf,
    pub init: String,
    /// (duration, file name) per segment, in order.
    pub segments: Vec<(f64, String)>,
    /// File names relative to `dir`: init, segments, then the playlists.
    pub files: Vec<String>,
    /// This track's own codec (the master adds the audio's to video variants).
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub duration: f64,
    /// Video renditions in the clear only (see [`crate::encrypt`]).
    pub iframes: Option<IFrames>,
}

/// A rendition playlist's init URI and (duration, URI) per segment.
pub fn parse_media_playlist(text: &str) -> anyhow::Result<(String, Vec<(f64, String)>)> {
    let mut init = None;
    let mut segments = Vec::new();
    let mut pending: Option<f64> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            init = rest.split("URI=\"").nth(1).and_then(|s| s.split('"').next()).map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            pending = Some(rest.split(',').next().unwrap_or("").parse().context("bad #EXTINF duration")?);
        } else if !line.starts_with('#') {
            let d = pending.take().context("segment URI without #EXTINF")?;
            segments.push((d, line.to_owned()));
        }
    }
    let init = init.context("playlist has no #EXT-X-MAP init segment")?;
    if segments.is_empty() {
        bail!("playlist has no segments");
    }
    for name in std::iter::once(&init).chain(segments.iter().map(|(_, s)| s)) {
        if name.contains('/') || name.contains("..") {
            bail!("unexpected URI {name:?} in playlist");
        }
    }
    Ok((init, segments))
}

/// RFC 6381 codec string from the avcC box: avc1.PPCCLL.
pub fn avc1_codec(init: &[u8]) -> anyhow::Result<String> {
    let at = init.windows(4).position(|w| w == b"avcC").context("init segment has no avcC box")?;
    let b = init.get(at + 5..at + 8).context("truncated avcC box")?;
    Ok(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
}

/// Peak and mean bits per second of timed chunks of `bytes` each.
pub fn rates(chunks: impl Iterator<Item = (f64, u64)>) -> (u64, u64) {
    let (mut total_bits, mut total_secs, mut peak) = (0u64, 0f64, 0f64);
    for (secs, bytes) in chunks {
        total_bits += bytes * 8;
        total_secs += secs;
        if secs > 0.5 {
            // A very short final segment would overstate the peak.
            peak = peak.max((bytes * 8) as f64 / secs);
        }
    }
    let average = (total_bits as f64 / total_secs.max(0.001)).ceil() as u64;
    ((peak.ceil() as u64).max(average), average)
}

/// Reads back one rendition; with `iframes`, a video rendition also gets
/// its I-frame playlist (written beside its media playlist).
pub async fn describe(out_dir: &Path, track: Track, iframes: bool) -> anyhow::Result<RenditionOutput> {
    let name = match &track {
        Track::Video(r) => r.name.clone(),
        Track::Audio => AUDIO_NAME.to_owned(),
    };
    let dir = out_dir.join(&name);
    let text = tokio::fs::read_to_string(dir.join("index.m3u8")).await.with_context(|| format!("no playlist for {name}"))?;
    let (init, segments) = parse_media_playlist(&text)?;
    let codecs = match &track {
        Track::Video(_) => avc1_codec(&tokio::fs::read(dir.join(&init)).await?)?,
        Track::Audio => AAC_CODEC.to_owned(),
    };
    let mut sized = Vec::with_capacity(segments.len());
    for (secs, file) in &segments {
        sized.push((*secs, tokio::fs::metadata(dir.join(file)).await?.len()));
    }
    let (bandwidth, average_bandwidth) = rates(sized.into_iter());
    let mut files = vec![init.clone()];
    files.extend(segments.iter().map(|(_, s)| s.clone()));
    files.push("index.m3u8".into());
    let iframes = match &track {
        Track::Video(_) if iframes => {
            let i = IFrames::measure(&dir, &init, &segments).await.with_context(|| format!("I-frames of {name}"))?;
            tokio::fs::write(dir.join(crate::iframes::PLAYLIST), i.playlist()).await?;
            files.push(crate::iframes::PLAYLIST.into());
            Some(i)
        }
        _ => None,
    };
    Ok(RenditionOutput {
        duration: segments.iter().map(|(d, _)| d).sum(),
        name,
        track,
        dir,
        init,
        segments,
        files,
        codecs,
        bandwidth,
        average_bandwidth,
        iframes,
    })
}

/// The codecs a video variant plays with: its own plus the audio's.
pub fn variant_codecs(video: &RenditionOutput, audio: Option<&RenditionOutput>) -> String {
    match audio {
        Some(a) => format!("{},{}", video.codecs, a.codecs),
        None => video.codecs.clone(),
    }
}

/// The master playlist: video variants highest first (each with the audio
/// group), the audio-only variant, then one I-frame playlist per video rung
/// that has one (none when the segments are encrypted).
pub fn master_playlist(video: &[RenditionOutput], audio: Option<&RenditionOutput>, frame_rate: f64) -> String {
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let group = audio.map(|a| {
        m.push_str(&format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_NAME}\",NAME=\"Main\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"{}/index.m3u8\"\n",
            a.name
        ));
        format!(",AUDIO=\"{AUDIO_NAME}\"")
    });
    let group = group.unwrap_or_default();
    let (a_peak, a_avg) = audio.map(|a| (a.bandwidth, a.average_bandwidth)).unwrap_or((0, 0));
    for r in video {
        let Track::Video(rung) = &r.track else { continue };
        m.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",RESOLUTION={}x{},FRAME-RATE={:.3}{group}\n{}/index.m3u8\n",
            r.bandwidth + a_peak,
            r.average_bandwidth + a_avg,
            variant_codecs(r, audio),
            rung.width,
            rung.height,
            frame_rate,
            r.name
        ));
    }
    if let Some(a) = audio {
        m.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"{group}\n{}/index.m3u8\n",
            a.bandwidth, a.average_bandwidth, a.codecs, a.name
        ));
    }
    for r in video {
        let (Track::Video(rung), Some(i)) = (&r.track, &r.iframes) else { continue };
        m.push_str(&format!(
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",RESOLUTION={}x{},URI=\"{}/{}\"\n",
            i.bandwidth,
            i.average_bandwidth,
            r.codecs,
            rung.width,
            rung.height,
            r.name,
            crate::iframes::PLAYLIST
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6.000000,\nseg_00000.m4s\n#EXTINF:2.000000,\nseg_00001.m4s\n#EXT-X-ENDLIST\n";

    #[test]
    fn media_playlists_yield_init_and_timed_segments() {
        let (init, segs) = parse_media_playlist(PLAYLIST).unwrap();
        assert_eq!(init, "init_0.mp4");
        assert_eq!(segs, [(6.0, "seg_00000.m4s".into()), (2.0, "seg_00001.m4s".into())]);
        assert!(parse_media_playlist("#EXTM3U\n#EXTINF:6,\n../x.m4s\n").is_err());
    }

    #[test]
    fn codec_string_is_read_from_avcc() {
        let mut init = b"....avcC".to_vec();
        init.extend([1, 0x64, 0x00, 0x1f, 0xff]);
        assert_eq!(avc1_codec(&init).unwrap(), "avc1.64001f");
        assert!(avc1_codec(b"nothing here").is_err());
    }

    #[test]
    fn peak_ignores_a_short_last_segment() {
        assert_eq!(rates([(6.0, 750_000), (6.0, 1_500_000), (0.1, 100_000)].into_iter()), (2_000_000, 1_553_720));
    }

    fn output(track: Track, codecs: &str, bw: u64) -> RenditionOutput {
        let name = match &track {
            Track::Video(r) => r.name.clone(),
            Track::Audio => AUDIO_NAME.into(),
        };
        let iframes = matches!(track, Track::Video(_)).then(|| IFrames { entries: vec![], bandwidth: 400_000, average_bandwidth: 300_000, init: "init_0.mp4".into() });
        RenditionOutput {
            name,
            track,
            dir: PathBuf::new(),
            init: "init_0.mp4".into(),
            segments: vec![],
            files: vec![],
            codecs: codecs.into(),
            bandwidth: bw,
            average_bandwidth: bw - 100,
            duration: 20.0,
            iframes,
        }
    }

    #[test]
    fn master_playlist_carries_the_audio_group_the_audio_only_variant_and_iframes() {
        let rung = PlannedRung { name: "720p".into(), width: 1280, height: 720, video_kbps: 3000 };
        let v = output(Track::Video(rung), "avc1.64001f", 3_500_000);
        let a = output(Track::Audio, AAC_CODEC, 130_000);
        let m = master_playlist(std::slice::from_ref(&v), Some(&a), 30.0);
        assert!(m.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        assert!(m.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Main\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n"));
        assert!(m.contains("#EXT-X-STREAM-INF:BANDWIDTH=3630000,AVERAGE-BANDWIDTH=3629800,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"audio\"\n720p/index.m3u8\n"));
        assert!(m.contains("#EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=129900,CODECS=\"mp4a.40.2\",AUDIO=\"audio\"\naudio/index.m3u8\n"));
        assert!(m.contains("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,AVERAGE-BANDWIDTH=300000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"720p/iframes.m3u8\"\n"));
        let silent = master_playlist(std::slice::from_ref(&v), None, 30.0);
        assert!(!silent.contains("AUDIO") && silent.contains("CODECS=\"avc1.64001f\",RESOLUTION"));
        let encrypted = RenditionOutput { iframes: None, ..v };
        assert!(!master_playlist(&[encrypted], Some(&a), 30.0).contains("I-FRAME"), "no I-frame playlist, no I-frame variant");
    }
}
