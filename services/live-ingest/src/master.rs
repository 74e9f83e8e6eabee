//! The live master playlist: one variant per video rung (CODECS from its
//! init segment, RESOLUTION from its track, FRAME-RATE of the ladder,
//! BANDWIDTH and AVERAGE-BANDWIDTH from the segments so far, never below
//! the rung's configured rate) and the audio rendition as an AUDIO group.
//! URIs are relative and carry the broadcast id, so each broadcast's
//! objects have their own URLs.

use std::fmt::Write;

use media::llhls::names::Object;

use crate::broadcast::Broadcast;
use crate::rendition::Kind;

const AUDIO_GROUP: &str = "aac";

/// None until every rendition has its init segment (the codecs are read
/// from it) and a complete segment: a player given a media playlist with
/// only the first parts of one finds "no segments" and gives up on it.
pub fn master_playlist(b: &Broadcast, fps: u32) -> Option<String> {
    let renditions = b.renditions();
    if renditions.is_empty() || renditions.iter().any(|r| !r.has_media() || !r.has_segment()) {
        return None;
    }
    let audio = renditions.iter().find(|r| matches!(r.kind, Kind::Audio { .. }));
    let (audio_codecs, audio_bps) = match audio {
        Some(a) => {
            let (codecs, _, peak, _) = a.facts();
            let Kind::Audio { kbps } = a.kind else { unreachable!("matched above") };
            (codecs, peak.max(u64::from(kbps) * 1000))
        }
        None => (None, 0),
    };
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(a) = audio {
        let _ = writeln!(out, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"{}/{}/{}\"", b.id, a.name, Object::Playlist);
    }
    for r in renditions {
        let Kind::Video { height, kbps } = r.kind else { continue };
        let (codecs, size, peak, mean) = r.facts();
        let configured = u64::from(kbps) * 1000;
        let bandwidth = peak.max(configured * 11 / 10) + audio_bps;
        let average = if mean > 0 { mean } else { configured } + audio_bps;
        let (w, h) = size.unwrap_or(((height * 16 / 9) & !1, height));
        let codecs: Vec<String> = codecs.into_iter().chain(audio_codecs.clone()).collect();
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},CODECS=\"{}\",RESOLUTION={w}x{h},FRAME-RATE={fps}.000", codecs.join(","));
        if audio.is_some() {
            let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
        }
        let _ = writeln!(out, "\n{}/{}/{}", b.id, r.name, Object::Playlist);
    }
    Some(out)
}
