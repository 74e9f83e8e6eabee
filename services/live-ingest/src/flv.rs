//! What an RTMP publisher sends, as FLV: the tag bodies RTMP carries are
//! FLV tag bodies, so the encoder's input is an FLV file written tag by tag
//! (header, then each tag with its 11-byte header and trailing size). Also
//! the codec checks: this ingest takes H.264 video and AAC audio, the pair
//! every RTMP encoder (OBS, ffmpeg, hardware) sends by default.

use bytes::{BufMut, Bytes, BytesMut};

/// Audio or video, as FLV numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio = 8,
    Video = 9,
}

/// One media message from the publisher.
#[derive(Debug, Clone)]
pub struct Tag {
    pub kind: Kind,
    /// Milliseconds, the publisher's clock (RTMP timestamps wrap at 2^32).
    pub timestamp: u32,
    pub body: Bytes,
}

/// A codec this ingest does not take: the reason goes to the log and the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

const AVC: u8 = 7;
const AAC: u8 = 10;

impl Tag {
    /// The codec check: H.264 (FLV codec 7) and AAC (sound format 10) only.
    pub fn check_codec(&self) -> Result<(), Unsupported> {
        let Some(&first) = self.body.first() else { return Ok(()) };
        match self.kind {
            // Enhanced RTMP (HEVC, AV1) sets the top bit and names a FourCC instead.
            Kind::Video if first & 0x80 != 0 => Err(Unsupported("video in an Enhanced RTMP codec (HEVC, AV1 or VP9); send H.264".into())),
            Kind::Video if first & 0x0f != AVC => Err(Unsupported(format!("video codec {} (FLV numbering); send H.264 (7)", first & 0x0f))),
            Kind::Audio if first >> 4 != AAC => Err(Unsupported(format!("audio format {} (FLV numbering); send AAC (10)", first >> 4))),
            _ => Ok(()),
        }
    }

    /// A codec configuration record (AVC sequence header, AAC AudioSpecificConfig):
    /// the decoder needs it before any frame, so a restarted encoder gets it again.
    pub fn is_sequence_header(&self) -> bool {
        self.body.len() >= 2 && self.body[1] == 0
    }

    /// A video key frame (frame type 1) that is a frame, not a header.
    pub fn is_key_frame(&self) -> bool {
        self.kind == Kind::Video && self.body.first().is_some_and(|b| b >> 4 == 1) && !self.is_sequence_header()
    }
}

/// The FLV file header and the first (empty) previous-tag-size.
pub fn header(audio: bool) -> Bytes {
    let flags = 0x01 | if audio { 0x04 } else { 0 };
    Bytes::copy_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One tag as FLV writes it; `timestamp` relative to the encoder's start.
pub fn encode(tag: &Tag, timestamp: u32) -> Bytes {
    let size = tag.body.len() as u32;
    let mut b = BytesMut::with_capacity(11 + tag.body.len() + 4);
    b.put_u8(tag.kind as u8);
    b.put_uint(u64::from(size), 3);
    b.put_uint(u64::from(timestamp & 0x00ff_ffff), 3);
    b.put_u8((timestamp >> 24) as u8);
    b.put_uint(0, 3);
    b.put_slice(&tag.body);
    b.put_u32(11 + size);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: Kind, body: &[u8]) -> Tag {
        Tag { kind, timestamp: 0, body: Bytes::copy_from_slice(body) }
    }

    #[test]
    fn only_h264_and_aac_pass() {
        assert!(tag(Kind::Video, &[0x17, 0]).check_codec().is_ok());
        assert!(tag(Kind::Video, &[0x12, 0]).check_codec().unwrap_err().0.contains("codec 2"));
        assert!(tag(Kind::Video, &[0x90, 0]).check_codec().unwrap_err().0.contains("Enhanced"));
        assert!(tag(Kind::Audio, &[0xaf, 1]).check_codec().is_ok());
        assert!(tag(Kind::Audio, &[0x2f, 1]).check_codec().unwrap_err().0.contains("format 2"));
    }

    #[test]
    fn headers_and_key_frames_are_told_apart() {
        assert!(tag(Kind::Video, &[0x17, 0, 0, 0, 0]).is_sequence_header());
        assert!(!tag(Kind::Video, &[0x17, 0, 0, 0, 0]).is_key_frame());
        assert!(tag(Kind::Video, &[0x17, 1, 0, 0, 0]).is_key_frame());
        assert!(!tag(Kind::Video, &[0x27, 1, 0, 0, 0]).is_key_frame());
    }

    #[test]
    fn tags_are_written_as_flv() {
        assert_eq!(&header(true)[..], b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
        let t = tag(Kind::Audio, &[0xaf, 1, 9]);
        let b = encode(&t, 0x0102_0304);
        assert_eq!(&b[..], &[8, 0, 0, 3, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0xaf, 1, 9, 0, 0, 0, 14]);
    }
}
