//! The bitrate ladder: which rungs a source gets.
//!
//! A rung is named by its short side ("720p" is 1280x720 landscape or
//! 720x1280 portrait), so portrait video gets the same quality steps. A rung
//! is never larger than the source; a source smaller than every rung gets one
//! rung at its own size. Dimensions are even (4:2:0 chroma needs it) and keep
//! the source's display aspect ratio.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    pub short_side: u32,
    pub video_kbps: u32,
}

/// A ladder written as `1080p=6000k,720p=3000k,...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ladder(pub Vec<Rung>);

/// Default in the spirit of Apple's HLS authoring spec.
pub const DEFAULT_LADDER: &str = "1080p=6000k,720p=3000k,480p=1100k,360p=365k";

impl FromStr for Ladder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rungs = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (size, rate) = item.split_once('=').ok_or_else(|| format!("rung {item:?} is not of the form 720p=3000k"))?;
            let short_side: u32 = size.trim().trim_end_matches('p').parse().map_err(|_| format!("rung size {size:?} is not like 720p"))?;
            let video_kbps: u32 = rate.trim().trim_end_matches('k').parse().map_err(|_| format!("rung bitrate {rate:?} is not like 3000k"))?;
            if !(64..=4320).contains(&short_side) || short_side % 2 == 1 || video_kbps == 0 {
                return Err(format!("rung {item:?} is out of range (even size 64p..4320p, bitrate > 0)"));
            }
            rungs.push(Rung { short_side, video_kbps });
        }
        if rungs.is_empty() {
            return Err("the ladder has no rungs".into());
        }
        rungs.sort_by_key(|r| std::cmp::Reverse(r.short_side));
        rungs.dedup_by_key(|r| r.short_side);
        Ok(Ladder(rungs))
    }
}

/// A rung sized for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
}

impl PlannedRung {
    /// Constrained VBR: peaks to 110% of target, VBV buffer of two seconds' worth.
    pub fn maxrate_kbps(&self) -> u32 {
        self.video_kbps * 11 / 10
    }
    pub fn bufsize_kbps(&self) -> u32 {
        self.video_kbps * 2
    }
}

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

impl Ladder {
    /// Rungs for a source of `width`x`height` (display size, after rotation).
    pub fn plan(&self, width: u32, height: u32) -> Vec<PlannedRung> {
        let src_short = width.min(height);
        let landscape = width >= height;
        let size = |short: u32| {
            let long = even(short as f64 * width.max(height) as f64 / src_short as f64);
            if landscape { (long, short) } else { (short, long) }
        };
        let mut planned: Vec<PlannedRung> = self
            .0
            .iter()
            .filter(|r| r.short_side <= src_short)
            .map(|r| {
                let (w, h) = size(r.short_side);
                PlannedRung { name: format!("{}p", r.short_side), width: w, height: h, video_kbps: r.video_kbps }
            })
            .collect();
        if planned.is_empty() {
            let short = even(src_short as f64).min(src_short.max(2));
            let (w, h) = size(short);
            let smallest = self.0.last().expect("ladder is never empty");
            planned.push(PlannedRung { name: format!("{short}p"), width: w, height: h, video_kbps: smallest.video_kbps });
        }
        planned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Ladder {
        DEFAULT_LADDER.parse().unwrap()
    }

    #[test]
    fn a_720p_source_gets_no_rung_above_720p() {
        let names: Vec<_> = ladder().plan(1280, 720).into_iter().map(|r| (r.name, r.width, r.height)).collect();
        assert_eq!(names, [("720p".into(), 1280, 720), ("480p".into(), 854, 480), ("360p".into(), 640, 360)]);
    }

    #[test]
    fn portrait_sources_keep_their_orientation() {
        let r = &ladder().plan(1080, 1920)[0];
        assert_eq!((r.name.as_str(), r.width, r.height), ("1080p", 1080, 1920));
    }

    #[test]
    fn a_tiny_source_gets_one_rung_at_its_own_size() {
        let plan = ladder().plan(320, 240);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].width, plan[0].height, plan[0].video_kbps), (320, 240, 365));
    }

    #[test]
    fn odd_dimensions_are_rounded_to_even() {
        for r in ladder().plan(1919, 1079) {
            assert_eq!(r.width % 2, 0);
            assert_eq!(r.height % 2, 0);
        }
    }

    #[test]
    fn malformed_ladders_are_refused_with_the_offending_rung() {
        assert!("720p".parse::<Ladder>().unwrap_err().contains("720p"));
        assert!("721p=100k".parse::<Ladder>().is_err());
        assert!("".parse::<Ladder>().is_err());
        assert_eq!("360p=365k,720p=3000k".parse::<Ladder>().unwrap().0[0].short_side, 720);
    }
}
