//! Settings of upload-http2, read from the environment.

use shared::auth::bootstrap::BootstrapSettings;
use shared::auth::AuthSettings;
use shared::backends::BackendSettings;
use shared::budget::BudgetSettings;
use shared::configuration::{ByteSize, Env, Seconds};
use shared::pace::PaceSettings;
use shared::ratelimit::{Action, RateLimitSettings};
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;
use shared::watch::WatchSettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub backends: BackendSettings,
    pub upload: UploadSettings,
    pub events: WatchSettings,
    /// Upload creation, per client.
    pub rate_limits: RateLimitSettings,
    pub auth: AuthSettings,
    /// The first admin key (this service hosts the key API).
    pub bootstrap: BootstrapSettings,
}

#[derive(Debug, Clone, Default)]
pub struct UploadSettings {
    pub max_bytes: ByteSize,
    pub part_bytes: ByteSize,
    pub parts_in_flight: usize,
    pub idle_timeout: Seconds,
    pub republish_every: Seconds,
    pub pace: PaceSettings,
    pub budget: BudgetSettings,
    pub reconcile: ReconcileSettings,
}

/// The reconciler of orphaned upload bytes ([`shared::reconcile`]).
#[derive(Debug, Clone, Default)]
pub struct ReconcileSettings {
    pub every: Seconds,
    pub grace: Seconds,
    pub lifecycle_days: i32,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8001"),
            telemetry: TelemetrySettings::from_env(env),
            backends: BackendSettings::from_env(env),
            upload: UploadSettings::from_env(env),
            events: WatchSettings::from_env(env),
            rate_limits: RateLimitSettings::from_env(env, &[Action::UploadCreate]),
            auth: AuthSettings::from_env(env),
            bootstrap: BootstrapSettings::from_env(env),
        }
    }
}

impl UploadSettings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            max_bytes: env.optional("UPLOAD_MAX_BYTES", "2GiB", "largest accepted upload; larger gets 413"),
            part_bytes: env.optional("UPLOAD_PART_BYTES", "8MiB", "S3 multipart part size (min 5MiB)"),
            parts_in_flight: env.optional("UPLOAD_PARTS_IN_FLIGHT", "3", "parts uploading to S3 at once per upload"),
            idle_timeout: env.optional("UPLOAD_IDLE_TIMEOUT", "60s", "an upload sending nothing for this long is dropped"),
            republish_every: env.optional("UPLOAD_REPUBLISH_INTERVAL", "30s", "how often uploads whose job publish failed are re-enqueued"),
            pace: PaceSettings::from_env(env),
            budget: BudgetSettings::from_env(env),
            reconcile: ReconcileSettings {
                every: env.optional("RECONCILE_INTERVAL", "10m", "how often upload objects and multipart uploads that no row knows are removed"),
                grace: env.optional("RECONCILE_GRACE", "6h", "only bytes older than this are judged: longer than any upload request may last"),
                lifecycle_days: env.optional("RECONCILE_LIFECYCLE_DAYS", "3", "bucket lifecycle rule: the server aborts multipart uploads this many days old (where supported)"),
            },
        };
        if s.part_bytes.0 < shared::storage::MIN_PART_BYTES {
            env.invalid(format!("UPLOAD_PART_BYTES={} is below S3's 5MiB minimum part size", s.part_bytes.0));
        }
        s
    }

    /// Worst-case memory one upload holds: the part filling plus those in flight.
    pub fn buffer_bytes(&self) -> u64 {
        shared::storage::upload_buffer_bytes(self.max_bytes.0, self.part_bytes, self.parts_in_flight)
    }
}
