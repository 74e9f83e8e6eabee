//! The budget of bytes that in-flight coalesced fetches may buffer
//! (EDGE_FLIGHT_BYTES). A flight keeps its whole object in memory while it
//! streams it to its waiters, outside the tiers' byte bounds; many large
//! misses at once could otherwise hold far more. A fetch that would take
//! the sum past the budget spills: its requests pass through, each
//! streaming from the origin without buffering (and nothing is cached this
//! time). `edge_flight_bytes` shows what is in use, `edge_flight_spills_total`
//! how often it ran out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::{IntCounter, IntGauge};

#[derive(Clone)]
pub struct FlightBudget {
    limit: u64,
    used: Arc<AtomicU64>,
    gauge: IntGauge,
    spills: IntCounter,
}

/// Bytes held against the budget; released when dropped (when the last
/// reader of the flight that holds it is done).
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicU64>,
    gauge: IntGauge,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.gauge.sub(self.bytes as i64);
    }
}

impl FlightBudget {
    pub fn new(limit: u64, gauge: IntGauge, spills: IntCounter) -> Self {
        Self { limit, used: Default::default(), gauge, spills }
    }

    /// `bytes` against the budget, or None (counted as a spill) when they
    /// would take it past its limit.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let taken = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(bytes).filter(|sum| *sum <= self.limit));
        match taken {
            Ok(_) => {
                self.gauge.add(bytes as i64);
                Some(Reservation { used: self.used.clone(), gauge: self.gauge.clone(), bytes })
            }
            Err(_) => {
                self.spills.inc();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_are_released_when_dropped() {
        let (gauge, spills) = (IntGauge::new("g", "g").unwrap(), IntCounter::new("s", "s").unwrap());
        let budget = FlightBudget::new(100, gauge.clone(), spills.clone());
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(41).is_none(), "60 + 41 > 100");
        let b = budget.reserve(40).expect("60 + 40 fits exactly");
        assert_eq!((gauge.get(), spills.get()), (100, 1));
        drop(a);
        assert_eq!(gauge.get(), 40);
        assert!(budget.reserve(60).is_some(), "released bytes are free again (and this one at once)");
        drop(b);
        assert_eq!(gauge.get(), 0);
        assert!(budget.reserve(101).is_none(), "larger than the whole budget");
        assert_eq!(spills.get(), 2);
    }
}
