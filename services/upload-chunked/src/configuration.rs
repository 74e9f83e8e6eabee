//! Settings of upload-chunked.

use shared::cache::RedisSettings;
use shared::configuration::Env;
use shared::db::DatabaseSettings;
use shared::queue::QueueSettings;
use shared::server::HttpSettings;
use shared::storage::S3Settings;
use shared::telemetry::TelemetrySettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
    pub s3: S3Settings,
    pub redis: RedisSettings,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8002"),
            telemetry: TelemetrySettings::from_env(env),
            database: DatabaseSettings::from_env(env),
            queue: QueueSettings::from_env(env),
            s3: S3Settings::from_env(env),
            redis: RedisSettings::from_env(env),
        }
    }
}
