//! Settings of the streaming origin.

use shared::configuration::Env;
use shared::db::DatabaseSettings;
use shared::server::HttpSettings;
use shared::storage::S3Settings;
use shared::telemetry::TelemetrySettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub s3: S3Settings,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8003"),
            telemetry: TelemetrySettings::from_env(env),
            database: DatabaseSettings::from_env(env),
            s3: S3Settings::from_env(env),
        }
    }
}
