//! The live ladder's transcoding speed against real time (run by
//! `scripts/bench-live`): a 1080p30 ingest, 20 s of it as FLV (what RTMP
//! carries), through live-ingest's own ffmpeg arguments as fast as ffmpeg
//! goes (no `-re`), once with the default ladder and once with four rungs
//! from 1080p. Speed = media seconds / wall seconds; ≥ 1.0 keeps up with a
//! live source. Prints one line per ladder, with ffmpeg's CPU share.
//!
//!   bench_live_ladder WORK_DIR

use std::process::Command;
use std::time::{Duration, Instant};

use live_ingest::configuration::{EncoderSettings, Ladder};
use live_ingest::ladder::{arguments, Output};
use shared::configuration::Seconds;

const SECONDS: u32 = 20;

fn main() -> anyhow::Result<()> {
    let work = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp".into()));
    std::fs::create_dir_all(&work)?;
    let source = work.join("ingest-1080p30.flv");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc2=size=1920x1080:rate=30:duration={SECONDS}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={SECONDS}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p", "-b:v", "6M", "-c:a", "aac", "-f", "flv"])
        .arg(&source)
        .status()?;
    anyhow::ensure!(made.success(), "could not make the 1080p30 ingest");
    let default_ladder: Ladder = "720p:720:2800,480p:480:1200,360p:360:700".parse().map_err(anyhow::Error::msg)?;
    let four: Ladder = "1080p:1080:5000,720p:720:2800,480p:480:1200,360p:360:700".parse().map_err(anyhow::Error::msg)?;
    for (name, ladder) in [("default ladder (720p, 480p, 360p + AAC)", default_ladder), ("4 rungs (1080p, 720p, 480p, 360p + AAC)", four)] {
        for preset in ["veryfast", "ultrafast"] {
            let enc = EncoderSettings { ffmpeg: "ffmpeg".into(), preset: preset.into(), fps: 30, keyframe_interval: Seconds(Duration::from_secs(1)), audio_kbps: 128, max_restarts: 0 };
            let mut outputs: Vec<Output> = ladder.for_source(Some(1080)).into_iter().map(Output::Video).collect();
            outputs.push(Output::Audio { kbps: 128 });
            // The service's arguments, with the file for stdin and /dev/null for each rendition's pipe.
            let args: Vec<String> = arguments(&enc, Duration::from_millis(500), &outputs)
                .into_iter()
                .map(|a| if a == "pipe:0" { source.to_string_lossy().into_owned() } else if a.starts_with("pipe:") { "/dev/null".into() } else { a })
                .collect();
            let started = Instant::now();
            let out = Command::new("/usr/bin/time").args(["-f", "%U %S %e", "ffmpeg", "-nostdin", "-y"]).args(&args).output()?;
            let wall = started.elapsed().as_secs_f64();
            anyhow::ensure!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
            let times = String::from_utf8_lossy(&out.stderr);
            let cpu: f64 = times.lines().last().unwrap_or("").split_whitespace().take(2).filter_map(|x| x.parse::<f64>().ok()).sum();
            println!(
                "{name}, x264 {preset}: {:.2}x real time ({SECONDS} s of media in {wall:.1} s; ffmpeg used {:.0} % of one core, {} cores here)",
                f64::from(SECONDS) / wall,
                cpu / wall * 100.0,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
        }
    }
    Ok(())
}
