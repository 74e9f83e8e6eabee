//! Settings of the transcode worker.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use shared::auth::AuthSettings;
use shared::backends::BackendSettings;
use shared::configuration::{Env, Seconds};
use shared::playback::MasterKeys;
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;

use crate::confine::{NetworkIsolation, DEFAULT_FORMATS};
use crate::ladder::{Ladder, DEFAULT_LADDER};
use crate::limits::SourceLimits;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub backends: BackendSettings,
    /// API keys for the admin endpoints.
    pub auth: AuthSettings,
    /// Wrap the content keys of encrypted (unlisted and private) videos.
    pub master_keys: MasterKeys,
    pub intake: IntakeSettings,
    pub transcode: TranscodeSettings,
}

/// How jobs reach the worker: pushed by the broker, or pulled by polling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Push,
    Pull,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "push" => Ok(Mode::Push),
            "pull" => Ok(Mode::Pull),
            other => Err(format!("{other:?} is not push or pull")),
        }
    }
}

/// Taking jobs and settling them.
#[derive(Debug, Clone, Default)]
pub struct IntakeSettings {
    pub mode: Mode,
    pub concurrency: u16,
    /// Pull mode: the poll interval right after an empty poll…
    pub poll_min: Duration,
    /// …doubling per empty poll up to this.
    pub poll_max: Duration,
    pub max_attempts: u32,
    /// The first retry waits this long, each later one twice the one before…
    pub retry_base: Duration,
    /// …up to this.
    pub retry_max: Duration,
}

impl IntakeSettings {
    /// The wait before attempt `attempt + 1`.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        self.retry_base.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(self.retry_max)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TranscodeSettings {
    pub ladder: Ladder,
    pub preset: String,
    pub ffmpeg: String,
    pub ffprobe: String,
    pub work_dir: PathBuf,
    pub stall_timeout: Duration,
    /// Demuxers ffmpeg and ffprobe may use (see [`crate::confine`]).
    pub formats: String,
    pub network: NetworkIsolation,
    pub limits: SourceLimits,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8021"),
            telemetry: TelemetrySettings::from_env(env),
            backends: BackendSettings::from_env(env),
            auth: AuthSettings::from_env(env),
            master_keys: env.required(
                "CONTENT_MASTER_KEYS",
                "master keys wrapping each encrypted video's content key, as kid:base64url(32 bytes),…; the first wraps, all unwrap, and at start keys under the others are re-wrapped under the first",
            ),
            intake: IntakeSettings {
                mode: env.optional("WORKER_MODE", "push", "push: the broker pushes jobs (basic.consume); pull: the worker polls (basic.get)"),
                concurrency: env.optional("WORKER_CONCURRENCY", "1", "jobs run at once (push: the AMQP prefetch); each is one ffmpeg"),
                poll_min: env.optional::<Seconds>("WORKER_POLL_MIN", "50ms", "pull mode: poll interval after the first empty poll").0,
                poll_max: env.optional::<Seconds>("WORKER_POLL_MAX", "2s", "pull mode: the interval doubles while idle, up to this").0,
                max_attempts: env.optional("WORKER_MAX_ATTEMPTS", "3", "attempts before a transiently failing job is dead-lettered"),
                retry_base: env.optional::<Seconds>("WORKER_RETRY_BASE", "5s", "delay before the first retry; doubles per attempt").0,
                retry_max: env.optional::<Seconds>("WORKER_RETRY_MAX", "5m", "longest delay between retries").0,
            },
            transcode: TranscodeSettings {
                ladder: env.optional("TRANSCODE_LADDER", DEFAULT_LADDER, "rungs as 1080p=6000k,720p=3000k,..."),
                preset: env.optional("FFMPEG_PRESET", "veryfast", "libx264 preset (speed vs compression)"),
                ffmpeg: env.optional("FFMPEG_PATH", "ffmpeg", "ffmpeg executable"),
                ffprobe: env.optional("FFPROBE_PATH", "ffprobe", "ffprobe executable"),
                work_dir: env.optional::<String>("WORK_DIR", "/tmp/transcode-worker", "scratch space for sources and outputs").into(),
                stall_timeout: env.optional::<Seconds>("FFMPEG_STALL_TIMEOUT", "120s", "kill ffmpeg after this long without progress").0,
                formats: env.optional("FFMPEG_FORMATS", DEFAULT_FORMATS, "container demuxers a source may use; never playlists or manifests (hls, dash, concat, image2)"),
                network: env.optional("FFMPEG_NETWORK_ISOLATION", "auto", "auto: ffmpeg/ffprobe get a network namespace of their own where the host allows it; required: refuse to start otherwise; off"),
                limits: SourceLimits {
                    max_long_side: env.optional("SOURCE_MAX_LONG_SIDE", "7680", "pixels on a source's longer side, at most"),
                    max_short_side: env.optional("SOURCE_MAX_SHORT_SIDE", "4320", "pixels on a source's shorter side, at most"),
                    max_aspect: env.optional("SOURCE_MAX_ASPECT", "4", "longer side over shorter side, at most"),
                    max_fps: env.optional("SOURCE_MAX_FPS", "60", "output frame rate; faster sources are clamped to it"),
                    max_duration_secs: env.optional::<Seconds>("SOURCE_MAX_DURATION", "24h", "longest source accepted").0.as_secs_f64(),
                    max_pixels: env.optional("SOURCE_MAX_PIXELS", "2e12", "width x height x fps x seconds one source may cost to decode"),
                    probe_timeout: env.optional::<Seconds>("FFPROBE_TIMEOUT", "30s", "ffprobe is killed and the source refused after this long").0,
                    deadline_factor: env.optional("FFMPEG_DEADLINE_FACTOR", "10", "an encode may last this many times the source's duration…"),
                    deadline_min: env.optional::<Seconds>("FFMPEG_DEADLINE_MIN", "10m", "…but never less than this; past it the source is refused").0,
                },
            },
        };
        let i = &s.intake;
        if i.concurrency == 0 {
            env.invalid("WORKER_CONCURRENCY must be at least 1");
        }
        if i.max_attempts == 0 {
            env.invalid("WORKER_MAX_ATTEMPTS must be at least 1");
        }
        if i.poll_min.is_zero() || i.poll_min > i.poll_max {
            env.invalid("WORKER_POLL_MIN must be above zero and at most WORKER_POLL_MAX");
        }
        let l = &s.transcode.limits;
        if l.max_short_side < 16 || l.max_long_side < l.max_short_side || !(1.0..=100.0).contains(&l.max_aspect) {
            env.invalid("SOURCE_MAX_SHORT_SIDE must be at least 16 and at most SOURCE_MAX_LONG_SIDE, and SOURCE_MAX_ASPECT from 1 to 100");
        }
        if !(l.max_fps >= 1.0 && l.max_pixels > 0.0 && l.deadline_factor >= 1.0) {
            env.invalid("SOURCE_MAX_FPS must be at least 1, SOURCE_MAX_PIXELS above 0 and FFMPEG_DEADLINE_FACTOR at least 1");
        }
        if i.retry_base < Duration::from_millis(1) || i.retry_base > i.retry_max {
            env.invalid("WORKER_RETRY_BASE must be at least 1ms and at most WORKER_RETRY_MAX");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let i = IntakeSettings { retry_base: Duration::from_secs(5), retry_max: Duration::from_secs(60), ..Default::default() };
        let d: Vec<u64> = (1..=6).map(|a| i.retry_delay(a).as_secs()).collect();
        assert_eq!(d, [5, 10, 20, 40, 60, 60]);
        assert_eq!(i.retry_delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn modes_parse_and_others_are_named_in_the_error() {
        assert_eq!("pull".parse::<Mode>(), Ok(Mode::Pull));
        assert!("poll".parse::<Mode>().unwrap_err().contains("poll"));
    }
}
