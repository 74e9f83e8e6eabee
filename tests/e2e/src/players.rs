//! Driving real players (hls.js and Shaka Player in headless Chromium,
//! `clients/hls_play.mjs` and `clients/shaka_play.mjs`) with their retries
//! off, and judging a run: what went wrong, in words.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::repo;

/// Wall time each player plays for.
pub const PLAY_SECONDS: u64 = 10;

#[derive(Clone, Copy, Debug)]
pub enum Player {
    ShakaDash,
    ShakaHls,
    HlsJs,
}

impl Player {
    fn script(self) -> &'static str {
        match self {
            Player::ShakaDash | Player::ShakaHls => "tests/e2e/clients/shaka_play.mjs",
            Player::HlsJs => "tests/e2e/clients/hls_play.mjs",
        }
    }

    pub fn url(self, front: &str, id: &str) -> String {
        match self {
            Player::ShakaDash => format!("{front}/hls/{id}/manifest.mpd"),
            Player::ShakaHls | Player::HlsJs => format!("{front}/hls/{id}/master.m3u8"),
        }
    }

    /// The player's own count, in "done": requests hls.js repeated; for
    /// Shaka, failures its networking engine would have retried (with its
    /// attempts at 1 nothing is repeated, so any is a failed request).
    pub fn retry_count(self) -> &'static str {
        match self {
            Player::HlsJs => "retries",
            Player::ShakaDash | Player::ShakaHls => "retry_events",
        }
    }

    /// hls.js retries by default; Shaka's retries are off in its script.
    fn extra_args(self) -> &'static [&'static str] {
        match self {
            Player::HlsJs => &["--no-retry"],
            _ => &[],
        }
    }
}

/// Every line the player wrote, up to and including "done"; panics on a
/// harness failure or when the run overstays its bound.
pub async fn play(player: Player, url: &str) -> Vec<Value> {
    play_with(player, url, PLAY_SECONDS, &[]).await
}

/// [`play`] for `seconds`, with the script's own options (`--low-latency`).
pub async fn play_with(player: Player, url: &str, seconds: u64, options: &[&str]) -> Vec<Value> {
    let mut child = tokio::process::Command::new("node")
        .arg(repo().join(player.script()))
        .args(["--url", url, "--seconds", &seconds.to_string()])
        .args(player.extra_args())
        .args(options)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the player");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The script's own hard timeout is seconds + 30 s; this one is a backstop.
    let bound = Duration::from_secs(seconds + 60);
    let read = async {
        while let Some(line) = lines.next_line().await.expect("player output") {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let last = v["event"] == "done" || v["event"] == "fatal-harness";
            seen.push(v);
            if last {
                break;
            }
        }
    };
    tokio::time::timeout(bound, read).await.unwrap_or_else(|_| panic!("{player:?} on {url} ran past {bound:?}"));
    let _ = child.wait().await;
    seen
}

pub fn events<'a>(lines: &'a [Value], event: &'a str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |v| v["event"] == event)
}

/// What went wrong in one run, in words; empty when it played clean.
pub fn problems(player: Player, url: &str, lines: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(done) = events(lines, "done").next() else {
        return vec![format!("{player:?} {url}: no result: {:?}", lines.last())];
    };
    // A blocking playlist reload, or a preload-hint part still streaming,
    // that the player abandoned itself (it switched rungs while waiting) is
    // the player's choice, not a failed request: hls.js reports its own abort
    // as a non-fatal `aborted` (ErrorDetails.INTERNAL_ABORTED), and the
    // browser the request as ERR_ABORTED. Any other error still counts.
    let own_abort = |e: &&Value| e["details"] == "aborted" && e["fatal"] == false;
    let errors: Vec<&Value> = events(lines, "error").filter(|e| !own_abort(e)).collect();
    if !errors.is_empty() {
        out.push(format!("player errors: {errors:?}"));
    }
    let abandoned = |r: &&Value| r["error"] == "net::ERR_ABORTED" && r["url"].as_str().is_some_and(|u| u.contains("_HLS_msn=") || u.contains("/part-"));
    let failed: Vec<&Value> = events(lines, "request").filter(|r| r["failed"] == true || r["status"].as_u64().is_none_or(|s| s >= 400)).filter(|r| !abandoned(r)).collect();
    let abandoned_count = events(lines, "request").filter(abandoned).count() as u64;
    if !failed.is_empty() || done["failed_requests"].as_u64() != Some(abandoned_count) {
        out.push(format!("failed requests ({}): {failed:?}", done["failed_requests"]));
    }
    let retries: Vec<&Value> = events(lines, "retry").collect();
    if done[player.retry_count()] != 0 || !retries.is_empty() {
        out.push(format!("{}: {} {retries:?}", player.retry_count(), done[player.retry_count()]));
    }
    // Shaka jumps small holes in the buffer without an error event; hls.js
    // reports the same thing as a (non-fatal) bufferSeekOverHole error.
    for stat in ["gapsJumped", "stallsDetected"] {
        if done["stats"][stat].as_u64().is_some_and(|n| n > 0) {
            out.push(format!("Shaka's {stat} = {} (stats: {})", done["stats"][stat], done["stats"]));
        }
    }
    let played = done["played_seconds"].as_f64().unwrap_or(0.0);
    if played < 3.0 {
        out.push(format!("played only {played} s of {PLAY_SECONDS}: {done}"));
    }
    if !events(lines, "request").any(|r| r["x_cache"] == "MISS") {
        out.push("no answer said X-Cache: MISS: the video was not cold".into());
    }
    out.into_iter().map(|p| format!("{player:?} {url}: {p}")).collect()
}

