//! Settings of live-ingest: where it listens (HTTP and RTMP), its backends,
//! the live ladder and its limits, the LL-HLS shape (part and segment
//! targets, DVR window), and how long a publisher may be silent or away.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use media::llhls::timeline::Shape;
use shared::auth::AuthSettings;
use shared::backends::BackendSettings;
use shared::configuration::{Env, Seconds};
use shared::server::HttpSettings;
use shared::telemetry::TelemetrySettings;
use shared::watch::WatchSettings;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub backends: BackendSettings,
    pub auth: AuthSettings,
    /// Subscribers of the streams' state events.
    pub events: WatchSettings,
    /// RTMP listen address.
    pub rtmp_addr: String,
    /// What the API tells publishers to connect to (`rtmp://host:1935/live`).
    pub ingest_url: String,
    /// What the API tells viewers to play from (a front door).
    pub playback_base: String,
    pub ladder: Ladder,
    pub limits: InputLimits,
    pub encoder: EncoderSettings,
    pub packaging: Packaging,
    /// A publisher that sends no media this long is dropped.
    pub idle_timeout: Seconds,
    /// A stream whose publisher left stays live this long, waiting for it.
    pub grace: Seconds,
    /// A viewer counts as live this long after its last fetch (as on the origin and edges).
    pub session_ttl: Seconds,
    /// Where encoders' scratch files (the replay being assembled) go.
    pub work_dir: String,
}

#[derive(Debug, Clone, Default)]
pub struct EncoderSettings {
    pub ffmpeg: String,
    /// x264 preset of the live ladder (speed over size: it must keep up).
    pub preset: String,
    /// Output frame rate of every rung (a faster source is reduced to it).
    pub fps: u32,
    /// A key frame every this long, on every rung at the same instants.
    pub keyframe_interval: Seconds,
    pub audio_kbps: u32,
    /// Encoder restarts allowed per publish before the publisher is dropped.
    pub max_restarts: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Packaging {
    pub part_target: Seconds,
    pub segment_target: Seconds,
    /// How far back viewers may seek (the playlist's window; segments stay in S3 for the replay).
    pub dvr_window: Seconds,
    /// Complete segments kept in memory for serving (older ones come from S3).
    pub memory_segments: usize,
}

impl Packaging {
    pub fn shape(&self) -> Shape {
        Shape { part_target: self.part_target.0, segment_target: self.segment_target.0, window: self.dvr_window.0 }
    }
}

/// The largest ingest accepted; bigger ones are refused with the reason.
#[derive(Debug, Clone, Default)]
pub struct InputLimits {
    pub max_height: u32,
    pub max_fps: f32,
}

/// One rung of the live ladder: `name:height:kbps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    pub name: String,
    pub height: u32,
    pub video_kbps: u32,
}

/// The live ladder, tallest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ladder(pub Vec<Rung>);

impl FromStr for Ladder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rungs = s
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| {
                let parts: Vec<&str> = r.split(':').collect();
                let [name, height, kbps] = parts[..] else { return Err(format!("rung {r:?} is not name:height:kbps")) };
                if !shared::extract::is_token(name, 32) || name == "audio" {
                    return Err(format!("rung name {name:?} must be [A-Za-z0-9._-]{{1,32}} and not \"audio\""));
                }
                let height: u32 = height.parse().map_err(|_| format!("rung {name}: height {height:?} is not a number"))?;
                let video_kbps: u32 = kbps.parse().map_err(|_| format!("rung {name}: bitrate {kbps:?} is not a number of kbit/s"))?;
                if height < 144 || height % 2 != 0 || video_kbps < 100 {
                    return Err(format!("rung {name}: height must be even and at least 144, bitrate at least 100 kbit/s"));
                }
                Ok(Rung { name: name.to_owned(), height, video_kbps })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rungs.is_empty() {
            return Err("the ladder needs at least one rung".into());
        }
        rungs.sort_by(|a, b| b.height.cmp(&a.height));
        if rungs.windows(2).any(|w| w[0].height == w[1].height) || rungs.iter().enumerate().any(|(i, r)| rungs[..i].iter().any(|o| o.name == r.name)) {
            return Err("rungs need distinct heights and names".into());
        }
        Ok(Self(rungs))
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rungs: Vec<String> = self.0.iter().map(|r| format!("{}:{}:{}", r.name, r.height, r.video_kbps)).collect();
        f.write_str(&rungs.join(","))
    }
}

impl Ladder {
    /// The rungs a source of `height` gets: never above it; a source
    /// shorter than every rung gets the lowest, at its own height.
    pub fn for_source(&self, height: Option<u32>) -> Vec<Rung> {
        let Some(h) = height else { return self.0.clone() };
        let fit: Vec<Rung> = self.0.iter().filter(|r| r.height <= h).cloned().collect();
        if fit.is_empty() {
            let lowest = self.0.last().expect("a ladder has a rung");
            return vec![Rung { height: h & !1, ..lowest.clone() }];
        }
        fit
    }
}

impl Settings {
    pub fn from_env(env: &mut Env) -> Self {
        let s = Self {
            http: HttpSettings::from_env(env, "0.0.0.0:8004"),
            telemetry: TelemetrySettings::from_env(env),
            backends: BackendSettings::from_env(env),
            auth: AuthSettings::from_env(env),
            events: WatchSettings::from_env(env),
            rtmp_addr: env.optional("RTMP_ADDR", "0.0.0.0:1935", "RTMP listen address for publishers, host:port"),
            ingest_url: env.optional("LIVE_INGEST_URL", "rtmp://127.0.0.1:1935/live", "the RTMP URL the API gives publishers (the stream key goes after it)"),
            playback_base: env.optional("LIVE_PLAYBACK_BASE", "http://127.0.0.1:8080", "the front door the API's playback URLs point at"),
            ladder: env.optional(
                "LIVE_LADDER",
                "720p:720:2800,480p:480:1200,360p:360:700",
                "live rungs as name:height:kbps,… (tallest used only when the source is at least as tall)",
            ),
            limits: InputLimits {
                max_height: env.optional("LIVE_MAX_INPUT_HEIGHT", "2160", "taller ingests are refused with the reason"),
                max_fps: env.optional("LIVE_MAX_INPUT_FPS", "60", "faster ingests are refused with the reason (up to it, output is LIVE_FPS)"),
            },
            encoder: EncoderSettings {
                ffmpeg: env.optional("FFMPEG_PATH", "ffmpeg", "the ffmpeg binary"),
                preset: env.optional("LIVE_X264_PRESET", "veryfast", "x264 preset of the live ladder"),
                fps: env.optional("LIVE_FPS", "30", "frame rate of every live rung"),
                keyframe_interval: env.optional("LIVE_KEYFRAME_INTERVAL", "1s", "key frame interval of every rung (aligned across rungs)"),
                audio_kbps: env.optional("LIVE_AUDIO_KBPS", "128", "AAC bitrate of the audio rendition"),
                max_restarts: env.optional("LIVE_MAX_ENCODER_RESTARTS", "5", "encoder restarts per publish before the publisher is dropped"),
            },
            packaging: Packaging {
                // Ten frames at 30 fps last 333.3 ms; the target must not be under them.
                part_target: env.optional("LIVE_PART_TARGET", "334ms", "LL-HLS part target (0.2 to 1 s; at least a whole number of frames: 334ms is 10 frames at 30 fps)"),
                segment_target: env.optional("LIVE_SEGMENT_TARGET", "2s", "LL-HLS segment length (a whole number of key frame intervals)"),
                dvr_window: env.optional("LIVE_DVR_WINDOW", "2h", "how far back live viewers may seek"),
                memory_segments: env.optional("LIVE_MEMORY_SEGMENTS", "30", "complete segments per rendition served from memory; older ones from S3"),
            },
            idle_timeout: env.optional("LIVE_IDLE_TIMEOUT", "10s", "a publisher sending no media this long is dropped"),
            grace: env.optional("LIVE_GRACE", "30s", "a stream whose publisher left stays live this long for it to come back"),
            session_ttl: env.optional("VIEWER_SESSION_TTL", "30s", "a viewer counts as live this long after its last fetch (as on the origin and edges)"),
            work_dir: env.optional("WORK_DIR", "/tmp/live-ingest", "scratch space for assembling replays"),
        };
        let p = &s.packaging;
        if p.part_target.0 < Duration::from_millis(200) || p.part_target.0 > Duration::from_secs(1) {
            env.invalid("LIVE_PART_TARGET must be between 200ms and 1s");
        }
        let kf = s.encoder.keyframe_interval.0;
        if kf.is_zero() || p.segment_target.0 < kf || p.segment_target.0.as_millis() % kf.as_millis().max(1) != 0 {
            env.invalid("LIVE_SEGMENT_TARGET must be a whole number of LIVE_KEYFRAME_INTERVALs (each segment starts on a key frame)");
        }
        if s.encoder.fps == 0 || s.encoder.fps > 60 {
            env.invalid("LIVE_FPS must be between 1 and 60");
        }
        if s.idle_timeout.0.is_zero() || p.memory_segments < 4 {
            env.invalid("LIVE_IDLE_TIMEOUT must be above 0 and LIVE_MEMORY_SEGMENTS at least 4");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_parse_tallest_first_and_refuse_nonsense() {
        let l: Ladder = "360p:360:700, 720p:720:2800".parse().unwrap();
        assert_eq!(l.0[0].name, "720p");
        assert_eq!(l.to_string(), "720p:720:2800,360p:360:700");
        assert!("720p:720".parse::<Ladder>().is_err());
        assert!("a:721:700".parse::<Ladder>().is_err());
        assert!("a:720:700,b:720:500".parse::<Ladder>().is_err());
        assert!("audio:720:700".parse::<Ladder>().is_err());
        assert!("".parse::<Ladder>().is_err());
    }

    #[test]
    fn a_source_never_gets_a_rung_above_itself() {
        let l: Ladder = "1080p:1080:5000,720p:720:2800,360p:360:700".parse().unwrap();
        let names = |rs: Vec<Rung>| rs.into_iter().map(|r| (r.name, r.height)).collect::<Vec<_>>();
        assert_eq!(names(l.for_source(Some(720))), [("720p".into(), 720), ("360p".into(), 360)]);
        assert_eq!(names(l.for_source(Some(241))), [("360p".into(), 240)]);
        assert_eq!(l.for_source(None).len(), 3);
    }
}
