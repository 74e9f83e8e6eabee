//! Settings of upload-chunked.

use shared::backends::BackendSettings;
use shared::configuration::Env;
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub backends: BackendSettings,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8002"),
            telemetry: TelemetrySettings::from_env(env),
            backends: BackendSettings::from_env(env),
        }
    }
}
