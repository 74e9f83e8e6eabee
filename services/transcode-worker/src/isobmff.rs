//! Just enough ISO-BMFF (MP4) box reading to locate the first sample of a
//! CMAF media segment: the key frame every segment starts with. The I-frame
//! playlists point at it with a byte range.
//!
//! (The `mp4` crate reads whole files with a `moov`; a lone segment has none,
//! and we need four boxes, so this is read by hand.)

use anyhow::{bail, Context};

/// A box's type and where its payload lies in the buffer.
#[derive(Debug, Clone, Copy)]
struct Box4 {
    kind: [u8; 4],
    start: usize,
    payload: usize,
    end: usize,
}

fn boxes(buf: &[u8], mut at: usize, end: usize) -> impl Iterator<Item = anyhow::Result<Box4>> + '_ {
    std::iter::from_fn(move || {
        if at + 8 > end {
            return None;
        }
        let size32 = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = buf[at + 4..at + 8].try_into().unwrap();
        let (size, header) = match size32 {
            0 => (end - at, 8),
            1 => match buf.get(at + 8..at + 16) {
                Some(b) => (u64::from_be_bytes(b.try_into().unwrap()) as usize, 16),
                None => return Some(Err(anyhow::anyhow!("truncated 64-bit box size"))),
            },
            s => (s, 8),
        };
        if size < header {
            return Some(Err(anyhow::anyhow!("box {} has an impossible size {size}", String::from_utf8_lossy(&kind))));
        }
        let b = Box4 { kind, start: at, payload: at + header, end: at.saturating_add(size) };
        at = b.end;
        Some(Ok(b))
    })
}

fn find(buf: &[u8], start: usize, end: usize, kind: &[u8; 4]) -> anyhow::Result<Option<Box4>> {
    for b in boxes(buf, start, end) {
        let b = b?;
        if &b.kind == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

fn u32_at(buf: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_be_bytes(buf.get(at..at + 4).context("box ends early")?.try_into().unwrap()))
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
/// sample data itself need not be in it).
pub fn first_sample(buf: &[u8]) -> anyhow::Result<FirstSample> {
    let moof = find(buf, 0, buf.len(), b"moof")?.context("segment has no moof box")?;
    if moof.end > buf.len() {
        bail!("moof box is larger than the bytes read");
    }
    let traf = find(buf, moof.payload, moof.end, b"traf")?.context("moof has no traf")?;
    let tfhd = find(buf, traf.payload, traf.end, b"tfhd")?.context("traf has no tfhd")?;
    let trun = find(buf, traf.payload, traf.end, b"trun")?.context("traf has no trun")?;

    let tf_flags = u32_at(buf, tfhd.payload)? & 0x00ff_ffff;
    let mut at = tfhd.payload + 8; // version/flags, track_ID
    let mut base = moof.start as u64;
    if tf_flags & 0x01 != 0 {
        base = u64::from_be_bytes(buf.get(at..at + 8).context("tfhd ends early")?.try_into().unwrap());
        at += 8;
    }
    if tf_flags & 0x02 != 0 {
        at += 4;
    }
    if tf_flags & 0x08 != 0 {
        at += 4;
    }
    let default_size = if tf_flags & 0x10 != 0 { Some(u32_at(buf, at)?) } else { None };

    let tr_flags = u32_at(buf, trun.payload)? & 0x00ff_ffff;
    let count = u32_at(buf, trun.payload + 4)?;
    if count == 0 {
        bail!("trun has no samples");
    }
    let mut at = trun.payload + 8;
    let data_offset = if tr_flags & 0x01 != 0 {
        let v = u32_at(buf, at)? as i32 as i64;
        at += 4;
        v
    } else {
        // No offset: the data follows the moof's mdat header.
        let mdat = find(buf, moof.end, buf.len(), b"mdat")?.context("no mdat after the moof")?;
        (mdat.payload - moof.start) as i64
    };
    if tr_flags & 0x04 != 0 {
        at += 4;
    }
    if tr_flags & 0x100 != 0 {
        at += 4;
    }
    let size = if tr_flags & 0x200 != 0 { u32_at(buf, at)? } else { default_size.context("no sample size in trun or tfhd")? };
    let start = base as i64 + data_offset;
    if start < moof.end as i64 || size == 0 {
        bail!("first sample lies outside the segment's data");
    }
    Ok(FirstSample { moof_start: moof.start as u64, end: start as u64 + size as u64 })
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
}
