//! Where a CMAF media segment's first sample ends: the key frame every
//! segment starts with, which the worker's I-frame playlists point at with a
//! byte range.

use anyhow::{bail, Context};

use super::{find_child, find_top, first_traf};

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
    let (moof, traf) = first_traf(buf, "segment")?;
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

    use crate::isobmff::testing::bx;

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
