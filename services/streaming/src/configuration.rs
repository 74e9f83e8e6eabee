//! Settings of the streaming origin: backends, cache policy, viewer
//! sessions, the bitrate cap, content steering, API keys and protected
//! playback (signing keys, token lifetime, content master keys).

use shared::auth::AuthSettings;
use shared::cache::RedisSettings;
use shared::configuration::{ByteSize, Env, Seconds};
use shared::db::DatabaseSettings;
use shared::playback::{MasterKeys, Signer};
use shared::playlist::Pathway;
use shared::ratelimit::{Action, RateLimitSettings};
use shared::server::HttpSettings;
use shared::sessions::Regions;
use shared::storage::S3Settings;
use shared::telemetry::TelemetrySettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub s3: S3Settings,
    pub redis: RedisSettings,
    /// This origin's name in the per-node viewer counts.
    pub node: String,
    pub cache: CachePolicy,
    /// How long "there is no such video" is remembered (0: not at all).
    pub negative_ttl: Seconds,
    pub session_ttl: Seconds,
    /// One session (one view) per client and video in this window.
    pub view_window: Seconds,
    pub rate_limits: RateLimitSettings,
    /// Regions viewers are counted and steered in; any other hint is "other".
    pub regions: Regions,
    pub cap: CapSettings,
    pub steering: SteeringSettings,
    pub auth: AuthSettings,
    pub playback: PlaybackSettings,
    /// live-ingest, for live masters (None: /live/ masters are not served).
    pub live_origin_url: Option<String>,
}

/// Signed playback of unlisted and private videos.
#[derive(Debug, Clone, Default)]
pub struct PlaybackSettings {
    /// Signs play URLs (the first key) and verifies tokens (every key).
    pub signer: Signer,
    pub token_ttl: Seconds,
    /// Unwrap content keys for the key endpoint.
    pub masters: MasterKeys,
}

/// Cache-Control of what the origin serves: edges and browsers obey it.
#[derive(Debug, Clone, Default)]
pub struct CachePolicy {
    pub playlist: String,
    pub segment: String,
}

/// Server-side bitrate adaptation: above either "above" threshold, new
/// sessions lose their top rungs; they get them back once both figures are
/// under their "below" thresholds. A threshold of 0 turns its figure off.
#[derive(Debug, Clone, Default)]
pub struct CapSettings {
    pub egress_above: ByteSize,
    pub egress_below: ByteSize,
    pub viewers_above: u64,
    pub viewers_below: u64,
    pub drop_rungs: usize,
    pub interval: Seconds,
}

/// HLS Content Steering. The first pathway is the primary; the second takes
/// a region's overflow while the secondary is active.
#[derive(Debug, Clone, Default)]
pub struct SteeringSettings {
    pub pathways: Vec<Pathway>,
    pub server_url: String,
    pub activate_above: u64,
    pub release_below: u64,
    pub ttl: Seconds,
}

/// `primary=http://a,secondary=http://b`.
fn parse_pathways(raw: &str) -> Result<Vec<Pathway>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (id, base) = p.split_once('=').ok_or_else(|| format!("{p:?} is not ID=URL"))?;
            if !shared::extract::is_token(id, usize::MAX) {
                return Err(format!("pathway id {id:?} must be [A-Za-z0-9._-]+"));
            }
            // An empty URL: relative to the host that served the master (any front door).
            if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
                return Err(format!("pathway {id}'s URL {base:?} must start with http:// or https://, or be empty"));
            }
            Ok(Pathway { id: id.to_owned(), base: base.trim_end_matches('/').to_owned() })
        })
        .collect()
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        let raw_pathways: String = env.optional("STEERING_PATHWAYS", "", "content steering pathways, first is primary: primary=http://cdn-a,secondary=http://cdn-b; an empty URL means the host that served the master (empty list: no steering)");
        let pathways = parse_pathways(&raw_pathways).unwrap_or_else(|e| {
            env.invalid(format!("STEERING_PATHWAYS: {e}"));
            Vec::new()
        });
        if pathways.len() == 1 {
            env.invalid("STEERING_PATHWAYS needs at least two pathways (a primary and a secondary), or none");
        }
        let s = Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8003"),
            telemetry: TelemetrySettings::from_env(env),
            database: DatabaseSettings::from_env(env),
            s3: S3Settings::from_env(env),
            redis: RedisSettings::from_env(env),
            node: env.optional("ORIGIN_NODE", "origin", "this origin's name in viewer counts per serving node"),
            cache: CachePolicy {
                playlist: env.optional(
                    "CACHE_CONTROL_PLAYLIST",
                    "public, max-age=3600, stale-while-revalidate=60, stale-if-error=86400",
                    "Cache-Control of playlists, manifests and WebVTT",
                ),
                segment: env.optional(
                    "CACHE_CONTROL_SEGMENT",
                    "public, max-age=31536000, immutable, stale-if-error=86400",
                    "Cache-Control of segments, init segments and images",
                ),
            },
            negative_ttl: env.optional("ORIGIN_NEGATIVE_TTL", "5s", "how long an unknown video id is answered 404 without asking the catalogue again (0: always ask)"),
            session_ttl: env.optional("VIEWER_SESSION_TTL", "30s", "a viewer counts as live this long after its last fetch"),
            view_window: env.optional("VIEW_WINDOW", "30m", "a client asking for a video's master again within this window gets its session back and counts no new view"),
            rate_limits: RateLimitSettings::from_env(env, &[Action::SessionIssue]),
            regions: env.optional("VIEWER_REGIONS", "", "regions viewers are counted and steered in, comma-separated; any other ?region= or X-Viewer-Region value counts as \"other\""),
            cap: CapSettings {
                egress_above: env.optional("BITRATE_CAP_EGRESS_ABOVE", "0", "egress per second above which new sessions lose top rungs (0: ignore egress)"),
                egress_below: env.optional("BITRATE_CAP_EGRESS_BELOW", "0", "egress per second below which the cap may lift"),
                viewers_above: env.optional("BITRATE_CAP_VIEWERS_ABOVE", "0", "live viewers above which new sessions lose top rungs (0: ignore viewers)"),
                viewers_below: env.optional("BITRATE_CAP_VIEWERS_BELOW", "0", "live viewers below which the cap may lift"),
                drop_rungs: env.optional("BITRATE_CAP_DROP_RUNGS", "1", "top video rungs left out while the cap is on"),
                interval: env.optional("BITRATE_CAP_INTERVAL", "1s", "how often egress and viewers are measured"),
            },
            steering: SteeringSettings {
                pathways,
                server_url: env.optional("STEERING_SERVER_URL", "", "base URL players fetch /steering/ from (empty: the host that served the master playlist)"),
                activate_above: env.optional("STEERING_ACTIVATE_ABOVE", "1000", "a region's live viewers above which its secondary pathway takes viewers"),
                release_below: env.optional("STEERING_RELEASE_BELOW", "800", "a region's live viewers below which its secondary drains; also the primary's share while active"),
                ttl: env.optional("STEERING_TTL", "10s", "how often players ask the steering server again"),
            },
            auth: AuthSettings::from_env(env),
            live_origin_url: env.maybe("LIVE_ORIGIN_URL", "base URL of live-ingest, whose live masters this origin rewrites per viewer (session, cap, steering); unset: live masters are not served here"),
            playback: PlaybackSettings {
                signer: env.required(
                    "PLAYBACK_SIGNING_KEYS",
                    "Ed25519 keys signing playback tokens of unlisted and private videos, as kid:base64url(32-byte seed),…; the first signs, all verify (edges get the public halves in PLAYBACK_PUBLIC_KEYS)",
                ),
                token_ttl: env.optional("PLAYBACK_TOKEN_TTL", "6h", "how long a play URL of an unlisted or private video stays valid"),
                masters: env.required("CONTENT_MASTER_KEYS", "master keys the content keys of encrypted videos are wrapped under, as kid:base64url(32 bytes),…; the same list as the transcode worker's"),
            },
        };
        if s.cap.egress_below > s.cap.egress_above || s.cap.viewers_below > s.cap.viewers_above {
            env.invalid("each BITRATE_CAP_*_BELOW must not exceed its *_ABOVE (the gap is the hysteresis)");
        }
        if s.steering.release_below >= s.steering.activate_above {
            env.invalid("STEERING_RELEASE_BELOW must be lower than STEERING_ACTIVATE_ABOVE");
        }
        if s.view_window.0.as_secs() == 0 {
            env.invalid("VIEW_WINDOW must be at least 1s");
        }
        if s.playback.token_ttl.0.as_secs() == 0 {
            env.invalid("PLAYBACK_TOKEN_TTL must be at least 1s");
        }
        if s.session_ttl.0.as_secs() == 0 || s.steering.ttl.0.as_secs() == 0 || s.cap.interval.0.is_zero() {
            env.invalid("VIEWER_SESSION_TTL and STEERING_TTL must be at least 1s, BITRATE_CAP_INTERVAL above 0");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pathways_are_id_equals_url_pairs() {
        let p = parse_pathways("primary=http://a:8080/, secondary=https://b").unwrap();
        assert_eq!(p[0], Pathway { id: "primary".into(), base: "http://a:8080".into() });
        assert_eq!(p[1].id, "secondary");
        assert!(parse_pathways("primary").is_err());
        assert!(parse_pathways("a b=http://x").is_err());
        assert!(parse_pathways("a=ftp://x").is_err());
        assert_eq!(parse_pathways("primary=,b=http://b").unwrap()[0].base, "");
        assert_eq!(parse_pathways("").unwrap(), vec![]);
    }
}
