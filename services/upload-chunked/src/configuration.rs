//! Settings of upload-chunked, read from the environment.

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
    pub tus: TusSettings,
    pub events: WatchSettings,
    /// Upload creation, per client.
    pub rate_limits: RateLimitSettings,
    /// API keys: every tus operation but OPTIONS needs one.
    pub auth: AuthSettings,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8002"),
            telemetry: TelemetrySettings::from_env(env),
            backends: BackendSettings::from_env(env),
            tus: TusSettings::from_env(env),
            events: WatchSettings::from_env(env),
            rate_limits: RateLimitSettings::from_env(env, &[Action::UploadCreate]),
            auth: AuthSettings::from_env(env),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TusSettings {
    pub max_size: ByteSize,
    pub part_bytes: ByteSize,
    pub parts_in_flight: usize,
    pub expiry: Seconds,
    pub idle_timeout: Seconds,
    pub lock_wait: Seconds,
    pub lease_ttl: Seconds,
    pub sweep_every: Seconds,
    pub republish_every: Seconds,
    pub cors_origins: String,
    pub pace: PaceSettings,
    pub budget: BudgetSettings,
}

impl TusSettings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            max_size: env.optional("TUS_MAX_SIZE", "2GiB", "largest upload (Tus-Max-Size); larger gets 413"),
            part_bytes: env.optional("TUS_PART_BYTES", "8MiB", "S3 part size uploads are cut at (min 5MiB); smaller remainders wait in a tail object"),
            parts_in_flight: env.optional("TUS_PARTS_IN_FLIGHT", "2", "parts uploading to S3 at once per request"),
            expiry: env.optional("TUS_EXPIRY", "24h", "an unfinished upload idle this long expires (Upload-Expires) and is reclaimed"),
            idle_timeout: env.optional("TUS_IDLE_TIMEOUT", "60s", "a request body silent this long is treated as cut off (its bytes are kept)"),
            lock_wait: env.optional("TUS_LOCK_WAIT", "3s", "how long a request waits for another writer of the same upload before 423"),
            lease_ttl: env.optional("TUS_LEASE_TTL", "15s", "a writer's lease on an upload lasts this long unless renewed (every third of it); a crashed writer blocks its upload at most this long"),
            sweep_every: env.optional("TUS_SWEEP_INTERVAL", "60s", "how often expired uploads are reclaimed and crashed completions resumed"),
            republish_every: env.optional("UPLOAD_REPUBLISH_INTERVAL", "30s", "how often uploads whose job publish failed are re-enqueued"),
            cors_origins: env.optional("CORS_ALLOWED_ORIGINS", "*", "origins browsers may upload from: * or a comma-separated list"),
            pace: PaceSettings::from_env(env),
            budget: BudgetSettings::from_env(env),
        };
        if s.lease_ttl.0 < std::time::Duration::from_secs(1) {
            env.invalid(format!("TUS_LEASE_TTL={:?} is below 1s; renewals every third of it would flood the database", s.lease_ttl.0));
        }
        if s.part_bytes.0 < shared::storage::MIN_PART_BYTES {
            env.invalid(format!(
                "TUS_PART_BYTES={} is below S3's 5MiB minimum part size",
                s.part_bytes.0
            ));
        }
        s
    }

    /// The most body one request can hold before it is in S3: the part
    /// filling plus those uploading (what the byte budget reserves).
    pub fn buffer_bytes(&self) -> u64 {
        shared::storage::upload_buffer_bytes(self.max_size.0, self.part_bytes, self.parts_in_flight)
    }
}
