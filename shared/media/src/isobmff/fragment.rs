//! What the live packager needs from an encoder's fragmented MP4: the
//! init segment's timescale (`moov/trak/mdia/mdhd`) and sample defaults
//! (`moov/mvex/trex`), and for each fragment
//! (`moof` + `mdat`) its decode time, its duration and whether its first
//! sample is a sync sample (a key frame: the part is INDEPENDENT, and a
//! segment may start there).
//!
//! One track per fragment stream: the packager runs one ffmpeg output per
//! rendition, so the first `traf` is the track.

use anyhow::{bail, Context};

use super::{find_child, find_top, first_traf, Box4};

/// `sample_is_non_sync_sample` in the sample flags (ISO/IEC 14496-12 §8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// One fragment, in its track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// `tfdt`'s baseMediaDecodeTime.
    pub decode_time: u64,
    /// The sum of its samples' durations.
    pub duration: u64,
    pub samples: u32,
    /// Its first sample is a sync sample.
    pub independent: bool,
}

/// What an init segment says about its first track's fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitInfo {
    /// Ticks per second.
    pub timescale: u32,
    /// trex's default sample duration and flags: the last word when neither
    /// a fragment's trun nor its tfhd gives them.
    pub default_duration: Option<u32>,
    pub default_flags: Option<u32>,
}

/// Reads an init segment (`moov`): the first track's timescale and its trex defaults.
pub fn init_info(init: &[u8]) -> anyhow::Result<InitInfo> {
    let timescale = timescale(init)?;
    let moov = find_top(init, 0, b"moov")?.context("init segment has no moov box")?;
    let trex = match find_child(init, &moov, b"mvex")? {
        Some(mvex) => find_child(init, &mvex, b"trex")?,
        None => None,
    };
    let (default_duration, default_flags) = match trex {
        // version/flags, track_ID, sample description index, then duration, size, flags.
        Some(t) => (Some(t.u32(init, 12)?), Some(t.u32(init, 20)?)),
        None => (None, None),
    };
    Ok(InitInfo { timescale, default_duration, default_flags })
}

/// The media timescale (ticks per second) of an init segment's first track.
pub fn timescale(init: &[u8]) -> anyhow::Result<u32> {
    let moov = find_top(init, 0, b"moov")?.context("init segment has no moov box")?;
    if moov.end > init.len() {
        bail!("moov box is larger than the bytes read");
    }
    let trak = find_child(init, &moov, b"trak")?.context("moov has no trak")?;
    let mdia = find_child(init, &trak, b"mdia")?.context("trak has no mdia")?;
    let mdhd = find_child(init, &mdia, b"mdhd")?.context("mdia has no mdhd")?;
    // Version 1 has 64-bit creation and modification times before the timescale.
    let at = if mdhd.u32(init, 0)? >> 24 == 1 { 20 } else { 12 };
    let ts = mdhd.u32(init, at)?;
    if ts == 0 {
        bail!("mdhd timescale is 0");
    }
    Ok(ts)
}

/// Reads the first `moof`/`traf` of `buf` (a whole `moof`; the `mdat` need
/// not be there), with `init`'s defaults. A fragment whose data offsets are
/// absolute (tfhd base-data-offset, from a muxer without
/// `default_base_moof`) is refused: its `moof` + `mdat` would not stand
/// alone as a part.
pub fn fragment(buf: &[u8], init: &InitInfo) -> anyhow::Result<Fragment> {
    let (_, traf) = first_traf(buf, "fragment")?;
    let tfhd = find_child(buf, &traf, b"tfhd")?.context("traf has no tfhd")?;
    let tfdt = find_child(buf, &traf, b"tfdt")?.context("traf has no tfdt (decode time)")?;
    let trun = find_child(buf, &traf, b"trun")?.context("traf has no trun")?;
    let defaults = track_defaults(buf, &tfhd)?;
    if tfhd.u32(buf, 0)? & 0x01 != 0 {
        bail!("tfhd has an absolute base data offset: the fragment does not stand alone (write with default_base_moof)");
    }

    let decode_time = if tfdt.u32(buf, 0)? >> 24 == 1 { tfdt.u64(buf, 4)? } else { tfdt.u32(buf, 4)? as u64 };

    let flags = trun.u32(buf, 0)? & 0x00ff_ffff;
    let samples = trun.u32(buf, 4)?;
    if samples == 0 {
        bail!("trun has no samples");
    }
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 4; // data offset
    }
    let first_flags = if flags & 0x04 != 0 {
        at += 4;
        Some(trun.u32(buf, at - 4)?)
    } else {
        None
    };
    // Per-sample fields, in this order, each present or not: duration, size, flags, composition offset.
    const FIELDS: [u32; 4] = [0x100, 0x200, 0x400, 0x800];
    let stride: usize = FIELDS.iter().filter(|bit| flags & **bit != 0).count() * 4;
    let mut duration: u64 = 0;
    let mut sample0_flags = None;
    for i in 0..samples as usize {
        let row = i.checked_mul(stride).and_then(|o| o.checked_add(at)).context("trun is too large")?;
        let mut col = row;
        for bit in FIELDS {
            if flags & bit == 0 {
                continue;
            }
            let v = trun.u32(buf, col)?;
            match bit {
                0x100 => duration = duration.checked_add(v as u64).context("fragment duration overflows")?,
                0x400 if i == 0 => sample0_flags = Some(v),
                _ => {}
            }
            col += 4;
        }
        if stride == 0 {
            break; // no per-sample fields: nothing more to read
        }
    }
    if flags & 0x100 == 0 {
        let d = defaults.duration.or(init.default_duration).context("no sample duration in trun, tfhd or trex")?;
        duration = (d as u64).checked_mul(samples as u64).context("fragment duration overflows")?;
    }
    let sync_flags = first_flags.or(sample0_flags).or(defaults.flags).or(init.default_flags);
    // No flags anywhere: every sample is a sync sample (as for audio).
    let independent = sync_flags.is_none_or(|f| f & NON_SYNC == 0);
    Ok(Fragment { decode_time, duration, samples, independent })
}

struct Defaults {
    duration: Option<u32>,
    flags: Option<u32>,
}

/// tfhd's default sample duration and flags, when it has them.
fn track_defaults(buf: &[u8], tfhd: &Box4) -> anyhow::Result<Defaults> {
    let flags = tfhd.u32(buf, 0)? & 0x00ff_ffff;
    let mut at = 8; // version/flags, track_ID
    if flags & 0x01 != 0 {
        at += 8; // base data offset
    }
    if flags & 0x02 != 0 {
        at += 4; // sample description index
    }
    let duration = if flags & 0x08 != 0 {
        at += 4;
        Some(tfhd.u32(buf, at - 4)?)
    } else {
        None
    };
    if flags & 0x10 != 0 {
        at += 4; // default sample size
    }
    let flags = if flags & 0x20 != 0 { Some(tfhd.u32(buf, at)?) } else { None };
    Ok(Defaults { duration, flags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isobmff::testing::{bx, full};

    fn be(v: u32) -> [u8; 4] {
        v.to_be_bytes()
    }

    fn fragment_of(buf: &[u8]) -> anyhow::Result<Fragment> {
        fragment(buf, &InitInfo { timescale: 90_000, ..InitInfo::default() })
    }

    /// moof { traf { tfhd, tfdt(v1), trun } } + mdat, as ffmpeg writes video:
    /// per-sample durations and sizes, first-sample flags.
    fn video_fragment(decode_time: u64, durations: &[u32], first_flags: u32) -> Vec<u8> {
        let tfhd = full(b"tfhd", 0, 0x02_0000, &[&be(1)]);
        let tfdt = full(b"tfdt", 1, 0, &[&decode_time.to_be_bytes()]);
        let mut rows: Vec<u8> = Vec::new();
        for d in durations {
            rows.extend_from_slice(&be(*d));
            rows.extend_from_slice(&be(100));
        }
        let trun = full(b"trun", 0, 0x01 | 0x04 | 0x100 | 0x200, &[&be(durations.len() as u32), &be(0), &be(first_flags), &rows]);
        let moof = bx(b"moof", &[full(b"mfhd", 0, 0, &[&be(1)]), bx(b"traf", &[tfhd, tfdt, trun].concat())].concat());
        [moof, bx(b"mdat", &vec![0; 100 * durations.len()])].concat()
    }

    #[test]
    fn a_video_fragment_s_time_duration_and_key_frame_are_read() {
        let f = fragment_of(&video_fragment(90_000, &[3000, 3000, 3000], 0x0200_0000)).unwrap();
        assert_eq!(f, Fragment { decode_time: 90_000, duration: 9000, samples: 3, independent: true });
        let f = fragment_of(&video_fragment(0, &[3000], 0x0101_0000)).unwrap();
        assert!(!f.independent, "a non-sync first sample");
    }

    #[test]
    fn defaults_come_from_tfhd_when_trun_has_none() {
        // tfhd: default duration 1024, default flags non-sync; trun: sizes only; tfdt v0.
        let tfhd = full(b"tfhd", 0, 0x08 | 0x20, &[&be(2), &be(1024), &be(NON_SYNC)]);
        let tfdt = full(b"tfdt", 0, 0, &[&be(48_000)]);
        let trun = full(b"trun", 0, 0x200, &[&be(4), &be(10), &be(10), &be(10), &be(10)]);
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, tfdt, trun].concat()));
        assert_eq!(fragment_of(&moof).unwrap(), Fragment { decode_time: 48_000, duration: 4096, samples: 4, independent: false });
    }

    #[test]
    fn the_timescale_is_read_from_either_mdhd_version() {
        for (version, fields) in [(0u8, vec![be(0).to_vec(), be(0).to_vec(), be(90_000).to_vec()]), (1, vec![vec![0; 8], vec![0; 8], be(90_000).to_vec()])] {
            let f: Vec<&[u8]> = fields.iter().map(Vec::as_slice).chain([&[0u8; 8][..]]).collect();
            let mdhd = full(b"mdhd", version, 0, &f);
            let init = [bx(b"ftyp", b"iso6"), bx(b"moov", &bx(b"trak", &bx(b"mdia", &mdhd)))].concat();
            assert_eq!(timescale(&init).unwrap(), 90_000, "version {version}");
        }
        assert!(timescale(&bx(b"moov", &[])).is_err());
    }

    #[test]
    fn broken_fragments_are_errors() {
        assert!(fragment_of(b"").is_err());
        let good = video_fragment(0, &[3000, 3000], 0);
        for cut in [8, 20, 40, 60] {
            assert!(fragment_of(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A sample count far beyond the box: refused, not read past it.
        let tfhd = full(b"tfhd", 0, 0, &[&be(1)]);
        let tfdt = full(b"tfdt", 0, 0, &[&be(0)]);
        let trun = full(b"trun", 0, 0x100, &[&be(u32::MAX), &be(5)]);
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, tfdt, trun].concat()));
        assert!(fragment_of(&moof).is_err());
    }

    /// Mutated fragments never panic (bounded: 20 000 cases).
    #[test]
    fn mutated_fragments_never_panic() {
        let good = video_fragment(1 << 40, &[3000, 3000, 3000, 3000], 0x0200_0000);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..20_000 {
            let mut m = good.clone();
            for _ in 0..1 + next() % 4 {
                if m.is_empty() {
                    break;
                }
                let at = (next() % m.len() as u64) as usize;
                match next() % 3 {
                    0 => m[at] = next() as u8,
                    1 => m.truncate(at),
                    _ => m.insert(at, next() as u8),
                }
            }
            let r = std::panic::catch_unwind(|| fragment_of(&m));
            assert!(r.is_ok(), "case {case} panicked on {m:02x?}");
        }
    }

    #[test]
    fn trex_defaults_apply_when_the_fragment_gives_none_and_absolute_offsets_are_refused() {
        let tfhd = full(b"tfhd", 0, 0, &[&be(1)]);
        let tfdt = full(b"tfdt", 0, 0, &[&be(0)]);
        let trun = full(b"trun", 0, 0x200, &[&be(2), &be(10), &be(10)]);
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, tfdt, trun].concat()));
        let init = InitInfo { timescale: 90_000, default_duration: Some(3000), default_flags: Some(NON_SYNC) };
        assert_eq!(fragment(&moof, &init).unwrap(), Fragment { decode_time: 0, duration: 6000, samples: 2, independent: false });
        assert!(fragment_of(&moof).unwrap_err().to_string().contains("trex"));

        let tfhd = full(b"tfhd", 0, 0x01 | 0x08, &[&be(1), &0u64.to_be_bytes(), &be(3000)]);
        let trun = full(b"trun", 0, 0x200, &[&be(1), &be(10)]);
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, full(b"tfdt", 0, 0, &[&be(0)]), trun].concat()));
        assert!(fragment_of(&moof).unwrap_err().to_string().contains("absolute base data offset"));
    }

    #[test]
    fn init_info_reads_the_trex_defaults() {
        let mdhd = full(b"mdhd", 0, 0, &[&be(0), &be(0), &be(15_360), &be(0), &[0; 4]]);
        let trex = full(b"trex", 0, 0, &[&be(1), &be(1), &be(512), &be(0), &be(NON_SYNC)]);
        let moov = bx(b"moov", &[bx(b"trak", &bx(b"mdia", &mdhd)), bx(b"mvex", &trex)].concat());
        let info = init_info(&[bx(b"ftyp", b"iso6"), moov].concat()).unwrap();
        assert_eq!(info, InitInfo { timescale: 15_360, default_duration: Some(512), default_flags: Some(NON_SYNC) });
    }
}
