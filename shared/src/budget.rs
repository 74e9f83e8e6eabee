//! A service's global budget of concurrent uploads and of upload bytes in
//! flight, so that a crowd of clients is refused with 503 + `Retry-After`
//! instead of taking all memory, connections or S3 bandwidth.
//!
//! "Bytes in flight" are body bytes a request may hold before they are in
//! S3: each upload reserves, when admitted, the most its writer can buffer
//! (its declared length, capped at part size × (parts in flight + 1)) and
//! gives it back when the request ends. Reserving up front, instead of per
//! chunk, keeps the byte path free of accounting and means an admitted
//! upload can never stall halfway for want of budget.
//!
//! Both budgets are tokio semaphores, refused at once rather than queued:
//! a queue would hold the very connections the budget exists to bound.
//! Every admission moves a gauge, every refusal a counter.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::configuration::{ByteSize, Env, Seconds};
use crate::error::Problem;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetSettings {
    /// 0: no limit.
    pub max_uploads: usize,
    /// 0: no limit.
    pub max_bytes: ByteSize,
    pub retry_after: Seconds,
}

impl BudgetSettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            max_uploads: env.optional("UPLOAD_MAX_CONCURRENT", "128", "upload requests this instance serves at once; more get 503 + Retry-After (0: no limit)"),
            max_bytes: env.optional("UPLOAD_MAX_BYTES_IN_FLIGHT", "1GiB", "body bytes this instance's uploads may buffer at once; more get 503 + Retry-After (0: no limit)"),
            retry_after: env.optional("UPLOAD_BUSY_RETRY_AFTER", "5s", "the Retry-After sent with a 503 when a budget is spent"),
        }
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Uploads,
    Bytes,
}

impl Resource {
    pub fn label(self) -> &'static str {
        match self {
            Resource::Uploads => "uploads",
            Resource::Bytes => "bytes",
        }
    }
}

struct Pool {
    resource: Resource,
    limit: u64,
    permits: Arc<Semaphore>,
}

#[derive(Clone)]
pub struct Budget {
    uploads: Option<Arc<Pool>>,
    bytes: Option<Arc<Pool>>,
    retry_after: Duration,
    in_use: IntGaugeVec,
    refusals: IntCounterVec,
}

impl Budget {
    pub fn new(settings: &BudgetSettings, metrics: &Metrics) -> Self {
        let in_use = metrics.register(IntGaugeVec::new(Opts::new("upload_budget_in_use", "Upload budget in use: concurrent uploads, or reserved body bytes"), &["resource"]).expect("valid metric"));
        let limit = metrics.register(IntGaugeVec::new(Opts::new("upload_budget_limit", "Upload budget configured (0: no limit)"), &["resource"]).expect("valid metric"));
        let refusals = metrics.register(IntCounterVec::new(Opts::new("upload_budget_refusals_total", "Uploads refused with 503 because a budget was spent"), &["resource"]).expect("valid metric"));
        let pool = |resource: Resource, n: u64| {
            limit.with_label_values(&[resource.label()]).set(n as i64);
            in_use.with_label_values(&[resource.label()]).set(0);
            refusals.with_label_values(&[resource.label()]).reset();
            // Semaphore::MAX_PERMITS is far above any byte budget a host has.
            (n > 0).then(|| Arc::new(Pool { resource, limit: n, permits: Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS as u64) as usize)) }))
        };
        Self {
            uploads: pool(Resource::Uploads, settings.max_uploads as u64),
            bytes: pool(Resource::Bytes, settings.max_bytes.0),
            retry_after: settings.retry_after.0,
            in_use,
            refusals,
        }
    }

    /// Admits one upload that may buffer up to `bytes`, or says which budget is spent.
    pub fn admit(&self, bytes: u64) -> Result<Admission, Exhausted> {
        let mut admission = Admission { held: Vec::with_capacity(2), in_use: self.in_use.clone() };
        for (pool, n) in [(&self.uploads, 1), (&self.bytes, bytes)] {
            let Some(pool) = pool else { continue };
            // One request larger than the whole budget takes all of it, rather than never fitting.
            let n = n.min(pool.limit).min(u32::MAX as u64) as u32;
            match pool.permits.clone().try_acquire_many_owned(n) {
                Ok(permit) => {
                    self.in_use.with_label_values(&[pool.resource.label()]).add(n as i64);
                    admission.held.push((pool.resource, n, permit));
                }
                Err(_) => {
                    // `admission` drops here and gives back what it took.
                    self.refusals.with_label_values(&[pool.resource.label()]).inc();
                    return Err(Exhausted { resource: pool.resource, limit: pool.limit, retry_after: self.retry_after });
                }
            }
        }
        Ok(admission)
    }
}

/// An admitted upload's share of the budget, given back on drop.
pub struct Admission {
    held: Vec<(Resource, u32, OwnedSemaphorePermit)>,
    in_use: IntGaugeVec,
}

impl Drop for Admission {
    fn drop(&mut self) {
        for (resource, n, permit) in self.held.drain(..) {
            drop(permit);
            self.in_use.with_label_values(&[resource.label()]).sub(n as i64);
        }
    }
}

/// A refusal: which budget is spent and when to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exhausted {
    pub resource: Resource,
    pub limit: u64,
    pub retry_after: Duration,
}

impl Exhausted {
    pub fn to_problem(&self) -> Problem {
        let what = match self.resource {
            Resource::Uploads => format!("{} uploads are already in progress", self.limit),
            Resource::Bytes => format!("uploads in progress already hold this server's {} bytes of upload buffer", self.limit),
        };
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upload-capacity-exhausted",
            "Too many uploads in progress",
            format!("{what}; nothing was stored. Retry after {} s.", self.retry_after_secs()),
        )
        .with("resource", self.resource.label())
        .with("limit", self.limit)
    }

    fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs().max(1)
    }

    /// Adds `Retry-After` to a response built from [`Exhausted::to_problem`].
    pub fn add_retry_after(&self, res: &mut Response) {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_secs()));
    }
}

impl IntoResponse for Exhausted {
    fn into_response(self) -> Response {
        let mut res = self.to_problem().into_response();
        self.add_retry_after(&mut res);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(uploads: usize, bytes: u64) -> (Budget, Metrics) {
        let m = Metrics::new("test");
        let s = BudgetSettings { max_uploads: uploads, max_bytes: ByteSize(bytes), retry_after: Seconds(Duration::from_secs(3)) };
        (Budget::new(&s, &m), m)
    }

    fn gauge(m: &Metrics, resource: &str) -> f64 {
        let series = format!("upload_budget_in_use{{resource=\"{resource}\",service=\"test\"}} ");
        let text = m.render();
        let line = text.lines().find(|l| l.starts_with(&series)).expect("series on the page");
        line[series.len()..].parse().unwrap()
    }

    #[test]
    fn the_n_plus_first_upload_is_refused_and_the_gauge_returns_to_zero() {
        let (b, m) = budget(2, 0);
        let one = b.admit(10).unwrap();
        let two = b.admit(10).unwrap();
        assert_eq!(gauge(&m, "uploads"), 2.0);
        let refused = b.admit(10).err().unwrap();
        assert_eq!(refused.resource, Resource::Uploads);
        let res = refused.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "3");
        drop((one, two));
        assert_eq!(gauge(&m, "uploads"), 0.0);
        assert!(m.render().contains("upload_budget_refusals_total{resource=\"uploads\",service=\"test\"} 1"));
        b.admit(10).unwrap();
    }

    #[test]
    fn a_byte_refusal_gives_back_the_upload_slot_it_took() {
        let (b, m) = budget(5, 100);
        let big = b.admit(80).unwrap();
        assert_eq!(b.admit(30).err().unwrap().resource, Resource::Bytes);
        assert_eq!(gauge(&m, "uploads"), 1.0);
        assert_eq!(gauge(&m, "bytes"), 80.0);
        drop(big);
        // Larger than the whole budget: takes all of it instead of never fitting.
        let all = b.admit(1000).unwrap();
        assert_eq!(gauge(&m, "bytes"), 100.0);
        drop(all);
        assert_eq!(gauge(&m, "bytes"), 0.0);
    }

    #[test]
    fn a_budget_of_zero_admits_everything() {
        let (b, _) = budget(0, 0);
        let held: Vec<_> = (0..1000).map(|_| b.admit(u64::MAX).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }
}
