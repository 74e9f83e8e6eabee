//! Settings of a CDN edge.

use shared::configuration::{ByteSize, Env};
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub origin_url: String,
    pub cache_bytes: ByteSize,
    pub max_object_bytes: ByteSize,
    pub region: String,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8011"),
            telemetry: TelemetrySettings::from_env(env),
            origin_url: env.required("ORIGIN_URL", "base URL of the origin (or a parent edge), e.g. http://127.0.0.1:8003"),
            cache_bytes: env.optional("EDGE_CACHE_BYTES", "512MiB", "memory the object cache may hold"),
            max_object_bytes: env.optional("EDGE_MAX_OBJECT_BYTES", "32MiB", "larger objects are streamed through, not cached"),
            region: env.optional("EDGE_REGION", "local", "region label reported in headers and metrics"),
        };
        if !(s.origin_url.starts_with("http://") || s.origin_url.starts_with("https://")) {
            env.invalid(format!("ORIGIN_URL={:?} must start with http:// or https://", s.origin_url));
        }
        if s.max_object_bytes > s.cache_bytes {
            env.invalid("EDGE_MAX_OBJECT_BYTES must not exceed EDGE_CACHE_BYTES");
        }
        s
    }
}
