//! A configured rate, as written in the environment: `off`, or `N/s`, `N/m`
//! or `N/h`, optionally followed by `burst=B` (how many may come at once
//! before the rate applies; default N). NGINX's `rate=` and `burst=` in one
//! value.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::Quota;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate(Option<Spec>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    count: NonZeroU32,
    unit: Unit,
    burst: NonZeroU32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
}

impl Unit {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
        })
    }
    fn suffix(self) -> char {
        match self {
            Unit::Second => 's',
            Unit::Minute => 'm',
            Unit::Hour => 'h',
        }
    }
}

impl Rate {
    pub const OFF: Rate = Rate(None);

    pub fn is_off(&self) -> bool {
        self.0.is_none()
    }

    /// The GCRA quota: one request per `unit / count`, `burst` at once.
    pub fn quota(&self) -> Option<Quota> {
        let s = self.0?;
        Quota::with_period(s.unit.duration() / s.count.get()).map(|q| q.allow_burst(s.burst))
    }

    /// How long an idle client takes to get its whole burst back; after
    /// that its state is the same as a client never seen.
    pub fn refill(&self) -> Duration {
        self.0.map_or(Duration::ZERO, |s| s.unit.duration() / s.count.get() * s.burst.get())
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "off" {
            return Ok(Rate::OFF);
        }
        let bad = || format!("{s:?} is not a rate: write N/s, N/m or N/h, optionally followed by burst=B (e.g. \"2/s burst=20\"), or off");
        let mut words = s.split_whitespace();
        let (count, unit) = words.next().and_then(|w| w.split_once('/')).ok_or_else(bad)?;
        let count: NonZeroU32 = count.parse().map_err(|_| bad())?;
        let unit = match unit {
            "s" => Unit::Second,
            "m" => Unit::Minute,
            "h" => Unit::Hour,
            _ => return Err(bad()),
        };
        let burst = match words.next() {
            None => count,
            Some(w) => w.strip_prefix("burst=").and_then(|b| b.parse().ok()).ok_or_else(bad)?,
        };
        if words.next().is_some() {
            return Err(bad());
        }
        Ok(Rate(Some(Spec { count, unit, burst })))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(s) => write!(f, "{}/{} burst={}", s.count, s.unit.suffix(), s.burst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units_and_bursts() {
        let r: Rate = "2/s burst=20".parse().unwrap();
        assert_eq!(r.to_string(), "2/s burst=20");
        assert_eq!(r.refill(), Duration::from_secs(10));
        assert_eq!("60/m".parse::<Rate>().unwrap().to_string(), "60/m burst=60");
        assert!("off".parse::<Rate>().unwrap().is_off());
        for bad in ["2", "0/s", "2/d", "2/s burst", "2/s burst=0", "2/s burst=3 x"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_quota_spreads_the_count_over_the_unit() {
        let q = "120/m burst=5".parse::<Rate>().unwrap().quota().unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_millis(500));
        assert_eq!(q.burst_size().get(), 5);
    }
}
