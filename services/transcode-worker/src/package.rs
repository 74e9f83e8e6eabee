//! After ffmpeg: measure what it wrote and describe it for players.
//!
//! BANDWIDTH and AVERAGE-BANDWIDTH come from the actual segment sizes (peak
//! and mean bits per second), CODECS from the avcC box of each init segment,
//! so the master playlist states what is really there, not what was asked for.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::ladder::PlannedRung;

/// One rung as written to disk.
#[derive(Debug, Clone)]
pub struct RenditionOutput {
    pub rung: PlannedRung,
    pub dir: PathBuf,
    /// File names relative to `dir`: init, segments, then the playlist.
    pub files: Vec<String>,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub duration: f64,
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

pub async fn describe(out_dir: &Path, rung: &PlannedRung, has_audio: bool) -> anyhow::Result<RenditionOutput> {
    let dir = out_dir.join(&rung.name);
    let text = tokio::fs::read_to_string(dir.join("index.m3u8")).await.with_context(|| format!("no playlist for {}", rung.name))?;
    let (init, segments) = parse_media_playlist(&text)?;
    let init_bytes = tokio::fs::read(dir.join(&init)).await?;
    let mut codecs = avc1_codec(&init_bytes)?;
    if has_audio {
        codecs.push_str(",mp4a.40.2");
    }
    let (mut total_bits, mut total_secs, mut peak) = (0u64, 0f64, 0f64);
    for (secs, name) in &segments {
        let bits = tokio::fs::metadata(dir.join(name)).await?.len() * 8;
        total_bits += bits;
        total_secs += secs;
        if *secs > 0.5 {
            // A very short final segment would overstate the peak.
            peak = peak.max(bits as f64 / secs);
        }
    }
    let average = (total_bits as f64 / total_secs.max(0.001)).ceil() as u64;
    let mut files = vec![init];
    files.extend(segments.into_iter().map(|(_, s)| s));
    files.push("index.m3u8".into());
    Ok(RenditionOutput {
        rung: rung.clone(),
        dir,
        files,
        codecs,
        bandwidth: (peak.ceil() as u64).max(average),
        average_bandwidth: average,
        duration: total_secs,
    })
}

/// The master playlist, highest rung first.
pub fn master_playlist(renditions: &[RenditionOutput], frame_rate: f64) -> String {
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in renditions {
        m.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",RESOLUTION={}x{},FRAME-RATE={:.3}\n{}/index.m3u8\n",
            r.bandwidth, r.average_bandwidth, r.codecs, r.rung.width, r.rung.height, frame_rate, r.rung.name
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
    fn master_playlist_carries_every_required_attribute() {
        let r = RenditionOutput {
            rung: PlannedRung { name: "720p".into(), width: 1280, height: 720, video_kbps: 3000 },
            dir: PathBuf::new(),
            files: vec![],
            codecs: "avc1.64001f,mp4a.40.2".into(),
            bandwidth: 3_500_000,
            average_bandwidth: 3_000_000,
            duration: 20.0,
        };
        let m = master_playlist(&[r], 30.0);
        assert!(m.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        assert!(m.contains("BANDWIDTH=3500000,AVERAGE-BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\n720p/index.m3u8"));
    }
}
