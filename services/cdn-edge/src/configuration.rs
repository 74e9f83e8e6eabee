//! Settings of a CDN edge.

use std::path::PathBuf;

use shared::cache::RedisSettings;
use shared::configuration::{ByteSize, Env, Secret, Seconds};
use shared::playback::Verifier;
use shared::ratelimit::{Action, RateLimitSettings};
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub origin_url: String,
    /// The live origin (live-ingest) `/live/` is fetched from; None: not served.
    pub live_origin_url: Option<String>,
    pub cache_bytes: ByteSize,
    pub disk_dir: Option<PathBuf>,
    pub disk_bytes: ByteSize,
    pub max_object_bytes: ByteSize,
    pub flight_bytes: ByteSize,
    pub negative_ttl: Seconds,
    pub negative_bytes: ByteSize,
    pub region: String,
    pub node: String,
    pub redis: RedisSettings,
    pub purge_token: Secret,
    pub session_ttl: Seconds,
    /// Purges and HLS requests, per client.
    pub rate_limits: RateLimitSettings,
    /// Checks playback tokens of unlisted and private videos.
    pub playback: Verifier,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8011"),
            telemetry: TelemetrySettings::from_env(env),
            origin_url: env.required("ORIGIN_URL", "base URL of the origin, or of a parent edge (tiered caching), e.g. http://127.0.0.1:8003"),
            live_origin_url: env.maybe("LIVE_ORIGIN_URL", "base URL of the live origin (live-ingest) or of a parent edge, for /live/ (unset: /live/ is not served here)"),
            cache_bytes: env.optional("EDGE_CACHE_BYTES", "512MiB", "memory the object cache may hold"),
            disk_dir: env.maybe("EDGE_DISK_DIR", "folder of the disk tier (unset or empty: memory only)"),
            disk_bytes: env.optional("EDGE_DISK_BYTES", "10GiB", "bytes the disk tier may hold"),
            max_object_bytes: env.optional("EDGE_MAX_OBJECT_BYTES", "32MiB", "larger objects are streamed through, not cached"),
            flight_bytes: env.optional("EDGE_FLIGHT_BYTES", "256MiB", "bytes in-flight origin fetches may buffer in all; a fetch past it is passed through unbuffered"),
            negative_ttl: env.optional("EDGE_NEGATIVE_TTL", "5s", "how long an origin 404 is answered from memory (0: not at all)"),
            negative_bytes: env.optional("EDGE_NEGATIVE_BYTES", "16MiB", "memory remembered 404s may hold"),
            region: env.optional("EDGE_REGION", "local", "region label reported in headers and metrics"),
            node: env.optional("EDGE_NODE", "edge", "this edge's name in viewer counts per serving node and in metrics"),
            redis: RedisSettings::from_env(env),
            purge_token: env.required("PURGE_TOKEN", "bearer token the purge API requires"),
            session_ttl: env.optional("VIEWER_SESSION_TTL", "30s", "a viewer counts as live this long after its last fetch (as on the origin)"),
            rate_limits: RateLimitSettings::from_env(env, &[Action::Purge, Action::EdgeObject]),
            playback: env.optional(
                "PLAYBACK_PUBLIC_KEYS",
                "",
                "Ed25519 public keys playback tokens of unlisted and private videos are checked with, as kid:base64url(32 bytes),…: the public halves of the origin's PLAYBACK_SIGNING_KEYS (empty: no token is valid, such videos are refused)",
            ),
        };
        if !(s.origin_url.starts_with("http://") || s.origin_url.starts_with("https://")) {
            env.invalid(format!("ORIGIN_URL={:?} must start with http:// or https://", s.origin_url));
        }
        if s.live_origin_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            env.invalid("LIVE_ORIGIN_URL must start with http:// or https://");
        }
        if s.max_object_bytes > s.cache_bytes {
            env.invalid("EDGE_MAX_OBJECT_BYTES must not exceed EDGE_CACHE_BYTES");
        }
        if s.purge_token.expose().len() < 16 {
            env.invalid("PURGE_TOKEN must be at least 16 characters");
        }
        s
    }
}
