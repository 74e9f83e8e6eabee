//! Just enough ISO-BMFF (MP4) box reading to locate the first sample of a
//! CMAF media segment: the key frame every segment starts with. The I-frame
//! playlists point at it with a byte range.
//!
//! (The `mp4` crate reads whole files with a `moov`; a lone segment has none,
//! and we need four boxes, so this is read by hand.)
//!
//! The bytes come from ffmpeg, but a reader that panics leaves the job's
//! delivery unacked, so every size and offset is treated as hostile: boxes
//! nest inside their parent, fields are read inside their box, and all
//! arithmetic is checked. The `fuzz/` crate drives [`first_sample`] with
//! arbitrary bytes.

use anyhow::{bail, Context};

/// A box's type and where it lies in the buffer (absolute offsets).
#[derive(Debug, Clone, Copy)]
struct Box4 {
    kind: [u8; 4],
    start: usize,
    payload: usize,
    /// May lie past the buffer for a top-level box we only need the header of
    /// (a segment's `mdat`); never past its parent for a nested one.
    end: usize,
}

impl Box4 {
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }

    /// `len` bytes at `offset` into the payload, which must lie inside the box.
    fn field<'a>(&self, buf: &'a [u8], offset: usize, len: usize) -> anyhow::Result<&'a [u8]> {
        let from = self.payload.checked_add(offset).context("box field offset overflows")?;
        let to = from.checked_add(len).context("box field offset overflows")?;
        if to > self.end {
            bail!("box {} ends before its fields do", self.name());
        }
        buf.get(from..to).with_context(|| format!("box {} ends early", self.name()))
    }

    fn u32(&self, buf: &[u8], offset: usize) -> anyhow::Result<u32> {
        Ok(u32::from_be_bytes(self.field(buf, offset, 4)?.try_into()?))
    }

    fn u64(&self, buf: &[u8], offset: usize) -> anyhow::Result<u64> {
        Ok(u64::from_be_bytes(self.field(buf, offset, 8)?.try_into()?))
    }
}

/// The boxes from `at` up to `end`, in order. Only the headers must be in
/// `buf`; an iteration stops at the first box whose header is not.
fn boxes(buf: &[u8], mut at: usize, end: usize) -> impl Iterator<Item = anyhow::Result<Box4>> + '_ {
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
fn find_top(buf: &[u8], start: usize, kind: &[u8; 4]) -> anyhow::Result<Option<Box4>> {
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
fn find_child(buf: &[u8], parent: &Box4, kind: &[u8; 4]) -> anyhow::Result<Option<Box4>> {
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

/// The first media sample of a segment's first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstSample {
    /// Where the `moof` starts: the byte range must include it.
    pub moof_start: u64,
    /// One past the sample's last byte.
    pub end: u64,
}

/// Reads the first `moof`/`traf` of `buf` (the head of a segment; the
/// sample data itself need not be in it). Any malformed input is an error,
/// never a panic.
pub fn first_sample(buf: &[u8]) -> anyhow::Result<FirstSample> {
    let moof = find_top(buf, 0, b"moof")?.context("segment has no moof box")?;
    if moof.end > buf.len() {
        bail!("moof box is larger than the bytes read");
    }
    let traf = find_child(buf, &moof, b"traf")?.context("moof has no traf")?;
    let tfhd = find_child(buf, &traf, b"tfhd")?.context("traf has no tfhd")?;
    let trun = find_child(buf, &traf, b"trun")?.context("traf has no trun")?;

    let tf_flags = tfhd.u32(buf, 0)? & 0x00ff_ffff;
    let mut at = 8; // version/flags, track_ID
    let mut base = moof.start as u64;
    if tf_flags & 0x01 != 0 {
        base = tfhd.u64(buf, at)?;
        at += 8;
    }
    if tf_flags & 0x02 != 0 {
        at += 4;
    }
    if tf_flags & 0x08 != 0 {
        at += 4;
    }
    let default_size = if tf_flags & 0x10 != 0 { Some(tfhd.u32(buf, at)?) } else { None };

    let tr_flags = trun.u32(buf, 0)? & 0x00ff_ffff;
    let count = trun.u32(buf, 4)?;
    if count == 0 {
        bail!("trun has no samples");
    }
    let mut at = 8;
    let data_offset = if tr_flags & 0x01 != 0 {
        let v = trun.u32(buf, at)? as i32 as i64;
        at += 4;
        v
    } else {
        // No offset: the data follows the moof's mdat header.
        let mdat = find_top(buf, moof.end, b"mdat")?.context("no mdat after the moof")?;
        (mdat.payload - moof.start) as i64
    };
    if tr_flags & 0x04 != 0 {
        at += 4;
    }
    if tr_flags & 0x100 != 0 {
        at += 4;
    }
    let size = if tr_flags & 0x200 != 0 { trun.u32(buf, at)? } else { default_size.context("no sample size in trun or tfhd")? };
    let start = base.checked_add_signed(data_offset).filter(|s| *s >= moof.end as u64 && size != 0);
    let end = start.and_then(|s| s.checked_add(size as u64));
    match (start, end) {
        (Some(_), Some(end)) => Ok(FirstSample { moof_start: moof.start as u64, end }),
        _ => bail!("first sample lies outside the segment's data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    /// styp, then moof { mfhd, traf { tfhd(default-base-is-moof), trun(data offset, sizes) } }, then mdat.
    fn segment(first_size: u32) -> (Vec<u8>, usize) {
        let styp = bx(b"styp", b"msdh\0\0\0\0msdh");
        let tfhd = bx(b"tfhd", &[&0x0002_0000u32.to_be_bytes()[..], &1u32.to_be_bytes()].concat());
        let trun_payload = |offset: u32| [&0x0000_0201u32.to_be_bytes()[..], &2u32.to_be_bytes(), &offset.to_be_bytes(), &first_size.to_be_bytes(), &7u32.to_be_bytes()].concat();
        let moof_len = |offset| 8 + bx(b"mfhd", &[0; 8]).len() + 8 + tfhd.len() + bx(b"trun", &trun_payload(offset)).len();
        let offset = (moof_len(0) + 8) as u32;
        let traf = bx(b"traf", &[tfhd.clone(), bx(b"trun", &trun_payload(offset))].concat());
        let moof = bx(b"moof", &[bx(b"mfhd", &[0; 8]), traf].concat());
        let mdat = bx(b"mdat", &vec![0xAB; first_size as usize + 7]);
        let moof_start = styp.len();
        ([styp, moof, mdat].concat(), moof_start)
    }

    #[test]
    fn the_first_sample_is_found_after_the_moof() {
        let (seg, moof_start) = segment(1000);
        let s = first_sample(&seg).unwrap();
        assert_eq!(s.moof_start, moof_start as u64);
        let mdat_payload = seg.len() - 1007;
        assert_eq!(s.end, (mdat_payload + 1000) as u64);
        // Only the head of the file is needed.
        assert_eq!(first_sample(&seg[..mdat_payload]).unwrap(), s);
    }

    #[test]
    fn broken_segments_are_refused() {
        assert!(first_sample(b"").is_err());
        assert!(first_sample(&bx(b"mdat", &[1, 2, 3])).is_err());
        let (seg, _) = segment(1000);
        assert!(first_sample(&seg[..40]).is_err(), "a cut moof");
    }

    /// Inputs that made the reader index past its buffer (each panicked
    /// before boxes had to nest inside their parent and sizes were checked).
    #[test]
    fn regression_boxes_that_overrun_their_parent_are_errors_not_panics() {
        // A traf declaring more bytes than its moof (and the buffer) holds:
        // walking its children read a header past the end.
        let mut child = bx(b"tfhd", &[0; 8]);
        child.extend_from_slice(&[0, 0]);
        let mut traf = 4096u32.to_be_bytes().to_vec();
        traf.extend_from_slice(b"traf");
        traf.extend_from_slice(&child);
        let moof = bx(b"moof", &traf);
        assert!(first_sample(&moof).is_err());

        // A 64-bit size near usize::MAX: the next box's offset overflowed.
        let mut huge = 1u32.to_be_bytes().to_vec();
        huge.extend_from_slice(b"free");
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 16]);
        assert!(first_sample(&huge).is_err());

        // A base data offset at i64::MAX plus a positive data offset: the
        // sum overflowed. (Far past the bytes read, but a range, not a panic.)
        let tfhd = bx(b"tfhd", &[&1u32.to_be_bytes()[..], &1u32.to_be_bytes(), &(i64::MAX as u64).to_be_bytes()].concat());
        let trun = bx(b"trun", &[&0x0000_0201u32.to_be_bytes()[..], &1u32.to_be_bytes(), &16u32.to_be_bytes(), &10u32.to_be_bytes()].concat());
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, trun].concat()));
        assert_eq!(first_sample(&moof).unwrap(), FirstSample { moof_start: 0, end: i64::MAX as u64 + 16 + 10 });
    }

    /// Fields are read inside their own box: a tfhd whose flags promise a
    /// base offset it does not hold must not borrow the trun's bytes.
    #[test]
    fn fields_past_their_box_are_refused() {
        let tfhd = bx(b"tfhd", &[&1u32.to_be_bytes()[..], &1u32.to_be_bytes()].concat());
        let trun = bx(b"trun", &[&0x0000_0201u32.to_be_bytes()[..], &1u32.to_be_bytes(), &64u32.to_be_bytes(), &10u32.to_be_bytes()].concat());
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, trun].concat()));
        let err = first_sample(&moof).unwrap_err().to_string();
        assert!(err.contains("tfhd"), "{err}");
    }

    /// Small xorshift: deterministic, so a failure names a reproducible case.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Mutated real segments (bounded: 20 000 cases, well under a second)
    /// never panic, and what is accepted is a range inside the numbers read.
    #[test]
    fn mutated_segments_never_panic() {
        const SIZES: [u32; 9] = [0, 1, 7, 8, 9, 16, 0x7fff_ffff, 0xffff_fff8, u32::MAX];
        let (seg, _) = segment(300);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..20_000 {
            let mut m = seg.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                match rng.below(4) {
                    0 => m[at] = rng.next() as u8,
                    1 if at + 4 <= m.len() => m[at..at + 4].copy_from_slice(&SIZES[rng.below(SIZES.len())].to_be_bytes()),
                    2 => m.truncate(at),
                    _ => m.insert(at, rng.next() as u8),
                }
                if m.is_empty() {
                    break;
                }
            }
            if let Ok(s) = std::panic::catch_unwind(|| first_sample(&m)).unwrap_or_else(|_| panic!("case {case} panicked on {m:02x?}")) {
                assert!(s.end > s.moof_start && (s.moof_start as usize) < m.len(), "case {case}: {s:?}");
            }
        }
    }
}
