//! How fast an upload body must arrive: a minimum rate over a window, an
//! idle limit and a whole-request deadline, shared by every upload path.
//!
//! Without these a client that sends one byte now and then holds a
//! request, its buffers and (for tus) its upload's lease for as long as it
//! likes; a few hundred such clients take a service's whole budget. The
//! rules follow Apache's `mod_reqtimeout` (`body=20,MinRate=500`): the rate
//! is checked per window, not per read, so a burst-then-pause client that
//! keeps up on average is fine.
//!
//! Only the client's time counts against the rate and the idle limit:
//! while the server is busy with the bytes it was given (an S3 part upload
//! applying backpressure) the client cannot send, so [`Pace::guard`]
//! excuses the time between one read returning and the next starting. The
//! deadline is wall-clock and excuses nothing.
//!
//! tower-http's `TimeoutBody` covers only the gap between two frames; no
//! maintained crate checks a minimum rate, hence this module.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::configuration::{Env, Seconds};

/// The configured rules; a zero turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PaceSettings {
    pub min_bytes_per_sec: u64,
    pub window: Seconds,
    pub deadline: Seconds,
}

impl PaceSettings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            min_bytes_per_sec: env.optional("UPLOAD_MIN_BYTES_PER_SEC", "500", "an upload body slower than this over UPLOAD_RATE_WINDOW is cut off with 408 (0: no minimum)"),
            window: env.optional("UPLOAD_RATE_WINDOW", "20s", "the window UPLOAD_MIN_BYTES_PER_SEC is measured over"),
            deadline: env.optional("UPLOAD_REQUEST_DEADLINE", "2h", "longest one upload request may take, body included, before 408 (0: no deadline)"),
        };
        if s.min_bytes_per_sec > 0 && s.window.0.is_zero() {
            env.invalid("UPLOAD_RATE_WINDOW must be above 0 when UPLOAD_MIN_BYTES_PER_SEC is set");
        }
        s
    }

    /// Every rule off (benchmarks compare against this).
    pub fn off() -> Self {
        Self::default()
    }
}

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Breach {
    #[error("no bytes arrived for {} s", .after.as_secs())]
    Idle { after: Duration },
    #[error("the body arrived at {received} bytes in {} s, below the minimum of {min_bytes_per_sec} bytes/s", .window.as_secs())]
    TooSlow { min_bytes_per_sec: u64, window: Duration, received: u64 },
    #[error("the request took longer than its {} s deadline", .after.as_secs())]
    Deadline { after: Duration },
}

impl Breach {
    /// Finds a breach anywhere in an error's source chain (body errors are
    /// boxed and wrapped by the layers they cross, e.g. multer's).
    pub fn find(err: &(dyn StdError + 'static)) -> Option<Breach> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(b) = e.downcast_ref::<Breach>() {
                return Some(*b);
            }
            if let Some(BodyError::Breach(b)) = e.downcast_ref::<BodyError>() {
                return Some(*b);
            }
            cur = e.source();
        }
        None
    }
}

/// One request body's pace, checked as it is read.
#[derive(Debug)]
pub struct Pace {
    min_bytes_per_sec: u64,
    window: Duration,
    idle: Option<Duration>,
    deadline: Option<(Duration, Instant)>,
    window_end: Instant,
    window_bytes: u64,
    idle_at: Option<Instant>,
    /// When the last read returned: the consumer's time since is excused.
    handed_at: Option<Instant>,
}

impl Pace {
    /// Starts the clock now. `idle` is the service's own silence limit (None: none).
    pub fn start(settings: &PaceSettings, idle: Option<Duration>) -> Self {
        Self::start_at(settings, idle, Instant::now())
    }

    fn start_at(s: &PaceSettings, idle: Option<Duration>, now: Instant) -> Self {
        let idle = idle.filter(|d| !d.is_zero());
        let deadline = Some(s.deadline.0).filter(|d| !d.is_zero()).map(|d| (d, now + d));
        Self {
            min_bytes_per_sec: s.min_bytes_per_sec,
            window: s.window.0,
            idle,
            deadline,
            window_end: now + s.window.0,
            window_bytes: 0,
            idle_at: idle.map(|d| now + d),
            // The clock for the client starts at the first read: until then
            // the server is busy setting up (lease, resuming the tail).
            handed_at: Some(now),
        }
    }

    fn rate_on(&self) -> bool {
        self.min_bytes_per_sec > 0 && !self.window.is_zero()
    }

    /// The earliest moment a check could fail; None when no rule is on.
    fn wake_at(&self) -> Option<Instant> {
        [self.deadline.map(|(_, at)| at), self.idle_at, self.rate_on().then_some(self.window_end)].into_iter().flatten().min()
    }

    /// Counts bytes that just arrived and checks the rules.
    pub fn record(&mut self, bytes: u64, now: Instant) -> Result<(), Breach> {
        self.window_bytes += bytes;
        if let Some(idle) = self.idle {
            self.idle_at = Some(now + idle);
        }
        self.check(now)
    }

    /// Checks the rules at `now`; a window that passed starts the next one.
    pub fn check(&mut self, now: Instant) -> Result<(), Breach> {
        if let Some((after, at)) = self.deadline {
            if now >= at {
                return Err(Breach::Deadline { after });
            }
        }
        if let (Some(idle), Some(at)) = (self.idle, self.idle_at) {
            if now >= at {
                return Err(Breach::Idle { after: idle });
            }
        }
        if self.rate_on() && now >= self.window_end {
            let needed = self.min_bytes_per_sec.saturating_mul(self.window.as_secs().max(1));
            if self.window_bytes < needed {
                return Err(Breach::TooSlow { min_bytes_per_sec: self.min_bytes_per_sec, window: self.window, received: self.window_bytes });
            }
            self.window_end = now + self.window;
            self.window_bytes = 0;
        }
        Ok(())
    }

    /// Time the server spent on its side does not count against the client.
    fn excuse(&mut self, d: Duration) {
        self.window_end += d;
        if let Some(at) = &mut self.idle_at {
            *at += d;
        }
    }

    /// Awaits one read from the client, failing when a rule is broken first.
    /// Time since the previous read returned is excused (see module docs).
    pub async fn guard<F: Future>(&mut self, read: F) -> Result<F::Output, Breach> {
        if let Some(handed) = self.handed_at.take() {
            self.excuse(handed.elapsed());
        }
        tokio::pin!(read);
        let out = loop {
            let Some(wake) = self.wake_at() else { break read.as_mut().await };
            match tokio::time::timeout_at(wake, read.as_mut()).await {
                Ok(out) => break out,
                Err(_) => self.check(Instant::now())?,
            }
        };
        self.handed_at = Some(Instant::now());
        Ok(out)
    }
}

/// What a paced byte stream yields on failure.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Breach(Breach),
    #[error("reading the body failed: {0}")]
    Body(Box<dyn StdError + Send + Sync>),
}

/// A byte stream read under `pace`: a breach ends it with [`BodyError::Breach`].
pub fn paced<S, E>(stream: S, pace: Pace) -> impl Stream<Item = Result<Bytes, BodyError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    futures::stream::unfold(Some((stream, pace)), |state| async move {
        let (mut stream, mut pace) = state?;
        match pace.guard(stream.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(bytes))) => match pace.record(bytes.len() as u64, Instant::now()) {
                Ok(()) => Some((Ok(bytes), Some((stream, pace)))),
                Err(b) => Some((Err(BodyError::Breach(b)), None)),
            },
            Ok(Some(Err(e))) => Some((Err(BodyError::Body(e.into())), None)),
            Err(b) => Some((Err(BodyError::Breach(b)), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min: u64, window_s: u64, deadline_s: u64) -> PaceSettings {
        PaceSettings { min_bytes_per_sec: min, window: Seconds(Duration::from_secs(window_s)), deadline: Seconds(Duration::from_secs(deadline_s)) }
    }

    #[test]
    fn a_window_below_the_minimum_rate_is_a_breach_and_one_above_starts_the_next() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut p = Pace::start_at(&rules(100, 10, 0), None, t0);
        p.record(999, s(5)).unwrap();
        // The window is judged only once it is over: 999 < 100 × 10.
        assert_eq!(
            p.check(s(10)),
            Err(Breach::TooSlow { min_bytes_per_sec: 100, window: Duration::from_secs(10), received: 999 })
        );
        let mut p = Pace::start_at(&rules(100, 10, 0), None, t0);
        p.record(1000, s(9)).unwrap();
        p.check(s(10)).unwrap();
        // A new window: the earlier bytes do not carry over.
        p.record(10, s(15)).unwrap();
        assert!(matches!(p.check(s(20)), Err(Breach::TooSlow { received: 10, .. })));
    }

    #[test]
    fn the_deadline_and_the_idle_limit_are_breaches_and_zero_turns_rules_off() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut p = Pace::start_at(&rules(0, 0, 30), Some(Duration::from_secs(5)), t0);
        p.record(1, s(4)).unwrap();
        p.check(s(8)).unwrap();
        assert_eq!(p.check(s(9)), Err(Breach::Idle { after: Duration::from_secs(5) }));
        let mut p = Pace::start_at(&rules(0, 0, 30), None, t0);
        for n in 1..30 {
            p.record(1, s(n)).unwrap();
        }
        assert_eq!(p.check(s(30)), Err(Breach::Deadline { after: Duration::from_secs(30) }));
        let mut off = Pace::start_at(&PaceSettings::off(), None, t0);
        assert!(off.wake_at().is_none());
        off.check(s(100_000)).unwrap();
    }

    #[test]
    fn server_time_is_excused_from_the_rate_but_not_from_the_deadline() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut p = Pace::start_at(&rules(100, 10, 60), None, t0);
        p.excuse(Duration::from_secs(50));
        p.record(10, s(50)).unwrap();
        assert_eq!(p.window_end, s(60));
        assert_eq!(p.check(s(60)), Err(Breach::Deadline { after: Duration::from_secs(60) }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_ends_with_the_breach_when_the_client_goes_quiet() {
        let trickle = futures::stream::iter(0..3)
            .then(|_| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
            })
            .chain(futures::stream::pending())
            .boxed();
        let pace = Pace::start(&rules(0, 0, 0), Some(Duration::from_secs(1)));
        let got: Vec<_> = paced(trickle, pace).collect().await;
        assert_eq!(got.len(), 4);
        assert!(got[..3].iter().all(|r| r.is_ok()));
        let err = got[3].as_ref().unwrap_err();
        assert_eq!(Breach::find(err), Some(Breach::Idle { after: Duration::from_secs(1) }));
    }
}
