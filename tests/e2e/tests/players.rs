//! Two independent players, with their retries off, play videos no request
//! has warmed yet, through both front doors (issue 19): Shaka Player on the
//! DASH manifest and on the HLS master, hls.js on the HLS master, each in
//! headless Chromium (`clients/shaka_play.mjs`, `clients/hls_play.mjs`).
//!
//! Why cold and without retries: the first request for an object at an edge
//! is a different code path from every later one (a miss, a coalesced
//! flight, gzip on the way out), and a player that retries turns a server
//! failure on that path into a short stall nobody sees. hls.js did exactly
//! that while Shaka, which gave up, showed the edges' panic. So each case
//! gets a video of its own, transcoded for this test and never fetched
//! before (readiness is polled on the API, not on /hls/), and asserts no
//! player error (hls.js's non-fatal ones included), no gap Shaka had to
//! jump and no stall, no retry, no failed request, that the edge really
//! was cold (some answer says `X-Cache: MISS`), and that playback advanced.

use std::process::Stdio;
use std::time::Duration;

use e2e::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Wall time each player plays for.
const PLAY_SECONDS: u64 = 10;

#[derive(Clone, Copy, Debug)]
enum Player {
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

    fn url(self, front: &str, id: &str) -> String {
        match self {
            Player::ShakaDash => format!("{front}/hls/{id}/manifest.mpd"),
            Player::ShakaHls | Player::HlsJs => format!("{front}/hls/{id}/master.m3u8"),
        }
    }

    /// The player's own count, in "done": requests hls.js repeated; for
    /// Shaka, failures its networking engine would have retried (with its
    /// attempts at 1 nothing is repeated, so any is a failed request).
    fn retry_count(self) -> &'static str {
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
async fn play(player: Player, url: &str) -> Vec<Value> {
    let mut child = tokio::process::Command::new("node")
        .arg(repo().join(player.script()))
        .args(["--url", url, "--seconds", &PLAY_SECONDS.to_string()])
        .args(player.extra_args())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the player");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The script's own hard timeout is seconds + 30 s; this one is a backstop.
    let bound = Duration::from_secs(PLAY_SECONDS + 60);
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

fn events<'a>(lines: &'a [Value], event: &'a str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |v| v["event"] == event)
}

/// What went wrong in one run, in words; empty when it played clean.
fn problems(player: Player, url: &str, lines: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(done) = events(lines, "done").next() else {
        return vec![format!("{player:?} {url}: no result: {:?}", lines.last())];
    };
    let errors: Vec<&Value> = events(lines, "error").collect();
    if !errors.is_empty() {
        out.push(format!("player errors: {errors:?}"));
    }
    let failed: Vec<&Value> = events(lines, "request").filter(|r| r["failed"] == true || r["status"].as_u64().is_none_or(|s| s >= 400)).collect();
    if !failed.is_empty() || done["failed_requests"] != 0 {
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

#[tokio::test]
async fn shaka_and_hls_js_play_cold_videos_through_both_front_doors_without_errors_or_retries() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let mut cases: Vec<(&str, Player)> = Vec::new();
    for front in [stack.nginx_http.as_str(), stack.haproxy.as_str()] {
        cases.extend([Player::ShakaDash, Player::ShakaHls, Player::HlsJs].map(|p| (front, p)));
    }

    // One small video per case, transcoded side by side (the two workers
    // take one each at a time).
    let titles: Vec<String> = (0..cases.len()).map(|i| format!("players-{i}")).collect();
    let ids = futures::future::join_all(titles.iter().map(|t| ready_clip(&client, &stack.nginx_http, t, 10, 320, 180, Duration::from_secs(300)))).await;

    let mut failures = Vec::new();
    for ((front, player), id) in cases.iter().zip(&ids) {
        let url = player.url(front, id);
        let lines = play(*player, &url).await;
        let done = events(&lines, "done").next().cloned().unwrap_or(Value::Null);
        eprintln!("{player:?} via {front}: played {} s, {} requests, {} {}", done["played_seconds"], done["requests"], player.retry_count(), done[player.retry_count()]);
        failures.extend(problems(*player, &url, &lines));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
