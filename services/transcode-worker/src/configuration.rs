//! Settings of the transcode worker.

use std::path::PathBuf;
use std::time::Duration;

use shared::backends::BackendSettings;
use shared::configuration::{Env, Seconds};
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;

use crate::ladder::{Ladder, DEFAULT_LADDER};

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub backends: BackendSettings,
    pub concurrency: u16,
    pub max_attempts: u32,
    pub transcode: TranscodeSettings,
}

#[derive(Debug, Clone, Default)]
pub struct TranscodeSettings {
    pub ladder: Ladder,
    pub preset: String,
    pub ffmpeg: String,
    pub ffprobe: String,
    pub work_dir: PathBuf,
    pub stall_timeout: Duration,
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8021"),
            telemetry: TelemetrySettings::from_env(env),
            backends: BackendSettings::from_env(env),
            concurrency: env.optional("WORKER_CONCURRENCY", "1", "jobs run at once (= AMQP prefetch); each is one ffmpeg"),
            max_attempts: env.optional("WORKER_MAX_ATTEMPTS", "3", "attempts before a transiently failing job is dead-lettered"),
            transcode: TranscodeSettings {
                ladder: env.optional("TRANSCODE_LADDER", DEFAULT_LADDER, "rungs as 1080p=6000k,720p=3000k,..."),
                preset: env.optional("FFMPEG_PRESET", "veryfast", "libx264 preset (speed vs compression)"),
                ffmpeg: env.optional("FFMPEG_PATH", "ffmpeg", "ffmpeg executable"),
                ffprobe: env.optional("FFPROBE_PATH", "ffprobe", "ffprobe executable"),
                work_dir: env.optional::<String>("WORK_DIR", "/tmp/transcode-worker", "scratch space for sources and outputs").into(),
                stall_timeout: env.optional::<Seconds>("FFMPEG_STALL_TIMEOUT", "120s", "kill ffmpeg after this long without progress").0,
            },
        };
        if s.concurrency == 0 {
            env.invalid("WORKER_CONCURRENCY must be at least 1");
        }
        if s.max_attempts == 0 {
            env.invalid("WORKER_MAX_ATTEMPTS must be at least 1");
        }
        s
    }
}
