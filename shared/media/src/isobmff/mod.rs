//! Just enough ISO-BMFF (MP4) box reading for what the platform does with
//! fragmented MP4:
//!
//! - [`sample`] — where a CMAF segment's first sample (its key frame) ends:
//!   the worker's I-frame playlists point at it with a byte range;
//! - [`fragment`] — a fragment's decode time, duration and whether it starts
//!   with a key frame, and an init segment's timescale: the live packager
//!   turns each fragment into an LL-HLS part;
//! - [`split`] — a byte stream (an encoder's pipe) cut into whole top-level boxes.
//!
//! (The `mp4` crate reads whole files with a `moov`; a lone fragment has
//! none, and we need a handful of boxes, so this is read by hand.)
//!
//! The bytes come from ffmpeg, but a reader that panics leaves a job's
//! delivery unacked or a live stream down, so every size and offset is
//! treated as hostile: boxes nest inside their parent, fields are read
//! inside their box, and all arithmetic is checked. The `fuzz/` crate drives
//! [`first_sample`] with arbitrary bytes.

pub mod fragment;
pub mod sample;
pub mod split;

pub use fragment::{fragment, init_info, timescale, Fragment, InitInfo};
pub use sample::{first_sample, FirstSample};
pub use split::Splitter;

use anyhow::{bail, Context};

/// A box's type and where it lies in the buffer (absolute offsets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Box4 {
    pub(crate) kind: [u8; 4],
    pub(crate) start: usize,
    pub(crate) payload: usize,
    /// May lie past the buffer for a top-level box we only need the header of
    /// (a segment's `mdat`); never past its parent for a nested one.
    pub(crate) end: usize,
}

impl Box4 {
    pub(crate) fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }

    /// `len` bytes at `offset` into the payload, which must lie inside the box.
    pub(crate) fn field<'a>(&self, buf: &'a [u8], offset: usize, len: usize) -> anyhow::Result<&'a [u8]> {
        let from = self.payload.checked_add(offset).context("box field offset overflows")?;
        let to = from.checked_add(len).context("box field offset overflows")?;
        if to > self.end {
            bail!("box {} ends before its fields do", self.name());
        }
        buf.get(from..to).with_context(|| format!("box {} ends early", self.name()))
    }

    pub(crate) fn u32(&self, buf: &[u8], offset: usize) -> anyhow::Result<u32> {
        Ok(u32::from_be_bytes(self.field(buf, offset, 4)?.try_into()?))
    }

    pub(crate) fn u64(&self, buf: &[u8], offset: usize) -> anyhow::Result<u64> {
        Ok(u64::from_be_bytes(self.field(buf, offset, 8)?.try_into()?))
    }
}

/// The boxes from `at` up to `end`, in order. Only the headers must be in
/// `buf`; an iteration stops at the first box whose header is not.
pub(crate) fn boxes(buf: &[u8], mut at: usize, end: usize) -> impl Iterator<Item = anyhow::Result<Box4>> + '_ {
    let end = end.min(buf.len());
    std::iter::from_fn(move || {
        let header = buf.get(at..at.checked_add(8)?.min(end)).filter(|h| h.len() == 8)?;
        let size32 = u32::from_be_bytes(header[..4].try_into().ok()?) as u64;
        let kind: [u8; 4] = header[4..].try_into().ok()?;
        let (size, header_len) = match size32 {
            // "To the end of the file": as far as the container goes.
            0 => ((end - at) as u64, 8),
            1 => match buf.get(at + 8..at + 16).filter(|_| at + 16 <= end) {
                Some(b) => (u64::from_be_bytes(b.try_into().ok()?), 16),
                None => return Some(Err(anyhow::anyhow!("truncated 64-bit box size"))),
            },
            s => (s, 8),
        };
        if size < header_len {
            at = end; // the rest cannot be walked
            return Some(Err(anyhow::anyhow!("box {} has an impossible size {size}", String::from_utf8_lossy(&kind))));
        }
        let Some(box_end) = usize::try_from(size).ok().and_then(|s| at.checked_add(s)) else {
            at = end;
            return Some(Err(anyhow::anyhow!("box {} is larger than memory", String::from_utf8_lossy(&kind))));
        };
        let b = Box4 { kind, start: at, payload: at + header_len as usize, end: box_end };
        at = box_end;
        Some(Ok(b))
    })
}

/// The first top-level box of `kind` from `start` (its payload may lie past the buffer).
pub(crate) fn find_top(buf: &[u8], start: usize, kind: &[u8; 4]) -> anyhow::Result<Option<Box4>> {
    for b in boxes(buf, start, buf.len()) {
        let b = b?;
        if &b.kind == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// The first child of `parent` of `kind`; every child walked must fit inside
/// `parent`, which must itself be inside the buffer.
pub(crate) fn find_child(buf: &[u8], parent: &Box4, kind: &[u8; 4]) -> anyhow::Result<Option<Box4>> {
    for b in boxes(buf, parent.payload, parent.end) {
        let b = b?;
        if b.end > parent.end {
            bail!("box {} overflows its parent {}", b.name(), parent.name());
        }
        if &b.kind == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// The first `moof` of `buf` (whole, inside the buffer) and its first `traf`;
/// `what` names the buffer in errors.
pub(crate) fn first_traf(buf: &[u8], what: &str) -> anyhow::Result<(Box4, Box4)> {
    let moof = find_top(buf, 0, b"moof")?.with_context(|| format!("{what} has no moof box"))?;
    if moof.end > buf.len() {
        bail!("moof box is larger than the bytes read");
    }
    let traf = find_child(buf, &moof, b"traf")?.context("moof has no traf")?;
    Ok((moof, traf))
}

/// Box builders for the tests of this module's readers.
#[cfg(test)]
pub(crate) mod testing {
    /// A box of `kind` around `payload` (32-bit size).
    pub fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    /// A full box: version, 24-bit flags, then `fields`.
    pub fn full(kind: &[u8; 4], version: u8, flags: u32, fields: &[&[u8]]) -> Vec<u8> {
        let mut payload = (((version as u32) << 24) | (flags & 0x00ff_ffff)).to_be_bytes().to_vec();
        for f in fields {
            payload.extend_from_slice(f);
        }
        bx(kind, &payload)
    }
}
