//! HLS `METHOD=AES-128` for videos that are not public (unlisted, private):
//! after ffmpeg has written a rendition, every media segment is encrypted in
//! place with the video's content key and its playlist names the key.
//!
//! **Why AES-128 and not SAMPLE-AES/cbcs:** whole-segment AES-128-CBC with
//! PKCS#7 padding is plain HLS; hls.js, Shaka, Safari and ffmpeg all play it
//! with no DRM stack, and the key is one 16-byte object the origin hands out
//! only with a valid playback token (`/hls/{id}/content.key`).
//!
//! - **The init segment stays clear:** `EXT-X-KEY` goes after `EXT-X-MAP`, so
//!   it applies to the segments only (RFC 8216 §4.3.2.4–5 allow this); the
//!   master playlist can still state CODECS read from it.
//! - **IV:** the tag has no IV attribute, so each segment's IV is its media
//!   sequence number as a 128-bit big-endian integer (RFC 8216 §5.2). The
//!   number is read from the playlist (`EXT-X-MEDIA-SEQUENCE` + position),
//!   never from a file name, so it is the one a player computes.
//! - **No I-frame playlists:** their byte ranges would point into CBC
//!   ciphertext that only decrypts from the start of the segment.
//! - **No DASH:** encrypted videos are HLS-only (no `manifest.mpd`). DASH
//!   would need CENC (AES-CTR or cbcs per sample), a second, different
//!   encryption of the same media.

use std::path::Path;

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use anyhow::{bail, Context};
use shared::playback::KEY_OBJECT;

/// A video's AES-128 content key.
pub type ContentKey = [u8; 16];

type Encryptor = cbc::Encryptor<aes::Aes128>;

/// The rendition playlist every encrypted rendition is described by.
const PLAYLIST: &str = "index.m3u8";

/// The key's URI as a media playlist (`/hls/{id}/{rendition}/index.m3u8`)
/// names it: `/hls/{id}/content.key`.
pub fn key_uri() -> String {
    format!("../{KEY_OBJECT}")
}

/// The `EXT-X-KEY` line every encrypted media playlist carries.
pub fn key_tag() -> String {
    format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{}\"", key_uri())
}

/// The IV of the segment with media sequence number `sequence`.
pub fn iv(sequence: u64) -> [u8; 16] {
    u128::from(sequence).to_be_bytes()
}

/// One segment's bytes, AES-128-CBC with PKCS#7 padding.
pub fn encrypt_segment(key: &ContentKey, sequence: u64, clear: &[u8]) -> Vec<u8> {
    Encryptor::new(key.into(), &iv(sequence).into()).encrypt_padded_vec_mut::<Pkcs7>(clear)
}

/// (media sequence number, URI) of every segment of a media playlist.
pub fn sequence_numbers(playlist: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut next: u64 = 0;
    let mut segments = Vec::new();
    for line in playlist.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            if !segments.is_empty() {
                bail!("#EXT-X-MEDIA-SEQUENCE after the first segment");
            }
            next = n.trim().parse().with_context(|| format!("bad #EXT-X-MEDIA-SEQUENCE {n:?}"))?;
        } else if !line.starts_with('#') {
            if line.contains('/') || line.contains("..") {
                bail!("unexpected segment URI {line:?} in playlist");
            }
            segments.push((next, line.to_owned()));
            next = next.checked_add(1).context("media sequence overflows")?;
        }
    }
    if segments.is_empty() {
        bail!("playlist has no segments");
    }
    Ok(segments)
}

/// The playlist with [`key_tag`] right after its one `EXT-X-MAP`, which must
/// come before the first segment (so the init segment stays clear).
pub fn with_key(playlist: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(playlist.len() + 64);
    let mut keyed = false;
    for line in playlist.lines() {
        let tag = line.trim();
        if tag.starts_with("#EXT-X-KEY:") {
            bail!("playlist already has an EXT-X-KEY");
        }
        if !tag.is_empty() && !tag.starts_with('#') && !keyed {
            bail!("a segment comes before #EXT-X-MAP");
        }
        out.push_str(line);
        out.push('\n');
        if tag.starts_with("#EXT-X-MAP:") {
            if keyed {
                bail!("more than one #EXT-X-MAP");
            }
            out.push_str(&key_tag());
            out.push('\n');
            keyed = true;
        }
    }
    if !keyed {
        bail!("playlist has no #EXT-X-MAP");
    }
    Ok(out)
}

/// Encrypts every segment of the rendition in `dir` in place and adds the
/// key to its playlist. Blocking (CPU and file I/O): run it off the runtime.
pub fn rendition(dir: &Path, key: &ContentKey) -> anyhow::Result<()> {
    let path = dir.join(PLAYLIST);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let keyed = with_key(&text).with_context(|| format!("{}", path.display()))?;
    for (sequence, name) in sequence_numbers(&text).with_context(|| format!("{}", path.display()))? {
        let segment = dir.join(&name);
        let clear = std::fs::read(&segment).with_context(|| format!("reading {}", segment.display()))?;
        std::fs::write(&segment, encrypt_segment(key, sequence, &clear)).with_context(|| format!("writing {}", segment.display()))?;
    }
    // Last: a playlist naming the key always lists encrypted segments.
    std::fs::write(&path, keyed).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockDecryptMut;

    const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-PLAYLIST-TYPE:VOD\n\
#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6.000000,\nseg_00000.m4s\n#EXTINF:2.000000,\nseg_00001.m4s\n#EXT-X-ENDLIST\n";

    #[test]
    fn sequence_numbers_come_from_the_playlist_not_the_names() {
        assert_eq!(sequence_numbers(PLAYLIST).unwrap(), [(7, "seg_00000.m4s".into()), (8, "seg_00001.m4s".into())]);
        let unnumbered = PLAYLIST.replace("#EXT-X-MEDIA-SEQUENCE:7\n", "");
        assert_eq!(sequence_numbers(&unnumbered).unwrap()[0].0, 0, "absent means 0");
        assert!(sequence_numbers("#EXTM3U\n#EXTINF:6,\n../x.m4s\n").is_err());
        assert!(sequence_numbers("#EXTM3U\n#EXT-X-ENDLIST\n").is_err());
    }

    #[test]
    fn the_key_follows_the_map_and_precedes_the_first_segment() {
        let k = with_key(PLAYLIST).unwrap();
        assert!(k.contains("#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"../content.key\"\n#EXTINF:6.000000,\nseg_00000.m4s\n"), "{k}");
        assert_eq!(k.matches("#EXT-X-KEY").count(), 1);
        assert!(with_key(&k).is_err(), "never keyed twice");
        assert!(with_key("#EXTM3U\n#EXTINF:6,\nseg_00000.m4s\n").is_err(), "no map");
        assert!(with_key("#EXTM3U\n#EXTINF:6,\nseg_00000.m4s\n#EXT-X-MAP:URI=\"i.mp4\"\n").is_err(), "map after a segment");
    }

    #[test]
    fn segments_decrypt_with_the_sequence_number_as_iv() {
        let key = [3u8; 16];
        let clear = b"\0\0\0\x18styp and then the rest of a segment".to_vec();
        let sealed = encrypt_segment(&key, 258, &clear);
        assert_eq!(sealed.len() % 16, 0);
        assert!(sealed.len() > clear.len(), "PKCS#7 always pads");
        assert_ne!(&sealed[..clear.len()], &clear[..]);
        assert_eq!(iv(258)[14..], [1, 2]);
        assert_eq!(iv(258)[..14], [0; 14]);
        let open = cbc::Decryptor::<aes::Aes128>::new(&key.into(), &iv(258).into()).decrypt_padded_vec_mut::<Pkcs7>(&sealed).unwrap();
        assert_eq!(open, clear);
        assert_ne!(encrypt_segment(&key, 259, &clear), sealed, "another sequence number, another IV");
    }
}
