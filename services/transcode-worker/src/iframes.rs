//! I-frame playlists (`EXT-X-I-FRAMES-ONLY`) over the rendition's own
//! segments: one byte range per segment, from its `moof` through the key
//! frame every segment starts with. Players use them for trick play and
//! scrubbing previews without a second set of files.
//!
//! Segments are 6 s and carry three GOPs in one fragment; only the first key
//! frame of each has a `moof` in front of it, so the I-frame cadence is the
//! segment cadence (one every 6 s), each lasting until the next.

use std::path::Path;

use anyhow::Context;
use tokio::io::AsyncReadExt;

use media::isobmff;

pub const PLAYLIST: &str = "iframes.m3u8";
/// Enough of a segment's head to hold its `moof` (a few KiB even at 60 fps).
const HEAD_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct IFrame {
    pub duration: f64,
    pub segment: String,
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IFrames {
    pub init: String,
    pub entries: Vec<IFrame>,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
}

impl IFrames {
    pub async fn measure(dir: &Path, init: &str, segments: &[(f64, String)]) -> anyhow::Result<Self> {
        let mut entries = Vec::with_capacity(segments.len());
        for (duration, name) in segments {
            let mut head = Vec::new();
            tokio::fs::File::open(dir.join(name)).await?.take(HEAD_BYTES).read_to_end(&mut head).await?;
            let s = isobmff::first_sample(&head).with_context(|| format!("segment {name}"))?;
            entries.push(IFrame { duration: *duration, segment: name.clone(), offset: s.moof_start, length: s.end - s.moof_start });
        }
        let (bandwidth, average_bandwidth) = crate::package::rates(entries.iter().map(|e| (e.duration, e.length)));
        Ok(Self { init: init.to_owned(), entries, bandwidth, average_bandwidth })
    }

    pub fn playlist(&self) -> String {
        let target = self.entries.iter().map(|e| e.duration.round() as u64).max().unwrap_or(1).max(1);
        let mut p = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI=\"{}\"\n",
            self.init
        );
        for e in &self.entries {
            p.push_str(&format!("#EXTINF:{:.6},\n#EXT-X-BYTERANGE:{}@{}\n{}\n", e.duration, e.length, e.offset, e.segment));
        }
        p.push_str("#EXT-X-ENDLIST\n");
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_playlist_lists_one_byte_range_per_segment() {
        let i = IFrames {
            init: "init_0.mp4".into(),
            entries: vec![
                IFrame { duration: 6.0, segment: "seg_00000.m4s".into(), offset: 24, length: 9000 },
                IFrame { duration: 1.5, segment: "seg_00001.m4s".into(), offset: 24, length: 8000 },
            ],
            bandwidth: 0,
            average_bandwidth: 0,
        };
        let p = i.playlist();
        assert!(p.contains("#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI=\"init_0.mp4\"\n"));
        assert!(p.contains("#EXTINF:6.000000,\n#EXT-X-BYTERANGE:9000@24\nseg_00000.m4s\n"));
        assert!(p.contains("#EXT-X-TARGETDURATION:6\n") && p.ends_with("#EXT-X-ENDLIST\n"));
    }
}
