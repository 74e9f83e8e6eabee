//! hls.js, unmodified, in headless Chromium (Debian's package, driven by
//! playwright-core: `clients/hls_play.mjs`), plays a transcoded ladder
//! through the front door and follows a content-steering change both ways,
//! for a video and for a live stream (LL-HLS, whose variants are steered
//! the same way: the secondary edge re-streams the live origin).
//!
//! The stack's edges and NGINX serve the media; this test runs its own
//! origin process (the stack's configuration, plus steering thresholds a
//! test can cross: above 3 viewers in the region the secondary takes the
//! excess, below 2 it drains) for the master playlist and the steering
//! server. The crowd is four simulated viewers in the player's region that
//! keep their sessions alive through NGINX and then stop.

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const SECONDARY: &str = "127.0.0.1:8013";
const PRIMARY: &str = "127.0.0.1:8080";


fn spawn_origin(port: u16, region: &str) -> Process {
    let overrides = [
        // Only listed regions are counted apart; anything else is "other".
        ("VIEWER_REGIONS", region.to_owned()),
        ("HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("STEERING_PATHWAYS", format!("primary=http://{PRIMARY},secondary=http://{SECONDARY}")),
        ("STEERING_ACTIVATE_ABOVE", "3".into()),
        ("STEERING_RELEASE_BELOW", "2".into()),
        ("STEERING_TTL", "2s".into()),
        ("VIEWER_SESSION_TTL", "15s".into()),
        ("RUST_LOG", "warn".into()),
    ];
    spawn_stack_service("streaming", "streaming", &overrides)
}

/// The player's JSON lines, read as they come.
struct Player {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<Value>,
}

impl Player {
    async fn next(&mut self) -> Option<Value> {
        let line = self.lines.next_line().await.ok()??;
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        // The noisy lines (every request, every second, every steering poll)
        // stay quiet; a failed request does not.
        let noisy = matches!(v["event"].as_str(), Some("request" | "time" | "frag")) && v["failed"] != true;
        if !noisy && v["reason"] != "manifest-loaded" {
            eprintln!("player: {line}");
        }
        self.seen.push(v.clone());
        Some(v)
    }

    /// Reads lines until one satisfies `want`, within `within`.
    async fn until(&mut self, within: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.next()).await {
                Ok(Some(v)) if v["event"] == "fatal-harness" => panic!("player harness failed: {v}"),
                Ok(Some(v)) if want(&v) => return v,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("player exited before {what}"),
                Err(_) => panic!("no {what} within {within:?}"),
            }
        }
    }
}

fn frag_from(host: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "frag" && v["host"] == host
}

#[tokio::test]
async fn hls_js_in_chromium_plays_through_the_front_door_and_follows_steering_both_ways() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let id = ready_clip(&client, &stack.nginx_http, "player", 60, 640, 360, Duration::from_secs(600)).await;
    let (origin, region, _process) = steering_origin().await;
    let master = format!("{origin}/hls/{id}/master.m3u8?region={region}");
    let nginx = stack.nginx_http.clone();
    follows_steering_both_ways(&client, &master, &["--seconds", "45", "--max-buffer", "10"], 35.0, move |sid| format!("{nginx}/hls/{id}/360p/index.m3u8?sid={sid}")).await;
}

#[tokio::test]
async fn hls_js_follows_steering_both_ways_on_a_live_stream_too() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let created: Value = client.post(format!("{}/api/v1/live", stack.nginx_http)).json(&serde_json::json!({"title": "steered live"})).send().await.unwrap().json().await.unwrap();
    let (id, key, playback) = (created["id"].as_str().unwrap(), created["stream_key"].as_str().unwrap(), created["playback_id"].as_str().unwrap().to_owned());
    let _publisher = publish_live(&format!("rtmp://127.0.0.1:1935/live/{key}"), 90, "640x360");
    let (origin, region, _process) = steering_origin().await;
    let master = format!("{origin}/live/{playback}/master.m3u8?region={region}");
    // The live master answers 503 until every rendition has a segment.
    let started = Instant::now();
    while client.get(&master).send().await.unwrap().status() != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "no live master within 30 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stream: Value = client.get(format!("{}/api/v1/live/{id}", stack.nginx_http)).send().await.unwrap().json().await.unwrap();
    let broadcast = stream["on_air"]["broadcast_id"].as_str().expect("on air").to_owned();
    let nginx = stack.nginx_http.clone();
    let keep_alive = move |sid: &str| format!("{nginx}/live/{playback}/{broadcast}/360p/index.m3u8?sid={sid}");
    follows_steering_both_ways(&client, &master, &["--seconds", "60", "--low-latency"], 45.0, keep_alive).await;
}

/// This test's own origin (the stack's configuration plus steering
/// thresholds a test can cross) in a region of its own, so no other test's
/// viewers count there: its URL, the region, and the process.
async fn steering_origin() -> (String, String, Process) {
    let port = free_port();
    let region = format!("player-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let process = spawn_origin(port, &region);
    let origin = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{origin}/health/ready"), Duration::from_secs(30)).await.expect("test origin ready");
    (origin, region, process)
}

/// hls.js plays `master` from the primary; a crowd of four sessions in the
/// player's region arrives and keeps fetching `keep_alive(sid)` through
/// NGINX until the player takes fragments from the secondary; then the
/// crowd leaves, and the player must come back to the primary and play
/// at least `min_played` seconds with no fatal error.
async fn follows_steering_both_ways(client: &reqwest::Client, master: &str, args: &[&str], min_played: f64, keep_alive: impl Fn(&str) -> String) {
    let mut child = tokio::process::Command::new("node")
        .arg(repo().join("tests/e2e/clients/hls_play.mjs"))
        .args(["--url", master])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the player");
    let stdout = child.stdout.take().unwrap();
    let mut player = Player { child, lines: BufReader::new(stdout).lines(), seen: Vec::new() };

    let ready = player.until(Duration::from_secs(60), "the page", |v| v["event"] == "ready").await;
    let manifest = player.until(Duration::from_secs(30), "the manifest", |v| v["event"] == "manifest").await;
    assert_eq!(manifest["pathway"], "primary", "{manifest}");
    player.until(Duration::from_secs(30), "a fragment from the primary (NGINX)", frag_from(PRIMARY)).await;
    player.until(Duration::from_secs(30), "playback", |v| v["event"] == "time" && v["t"].as_f64().unwrap_or(0.0) > 2.0).await;

    // The crowd arrives in the same region and keeps watching through NGINX.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut crowd = Vec::new();
    for _ in 0..4 {
        let r = client.get(master).send().await.unwrap();
        let sid = r.headers()["x-session-id"].to_str().unwrap().to_owned();
        let (stop, url, client) = (stop.clone(), keep_alive(&sid), client.clone());
        crowd.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    let moved = player.until(Duration::from_secs(40), "a fragment from the secondary edge", frag_from(SECONDARY)).await;
    eprintln!("steered to the secondary: {moved}");

    // The crowd leaves; once its sessions lapse the secondary drains.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in crowd {
        c.await.unwrap();
    }
    player.until(Duration::from_secs(60), "steering back to the primary", |v| v["event"] == "steering" && v["pathway"] == "primary" && v["from"] == "secondary").await;
    player.until(Duration::from_secs(30), "a fragment from the primary again", frag_from(PRIMARY)).await;

    let done = player.until(Duration::from_secs(120), "the end of the run", |v| v["event"] == "done").await;
    let _ = player.child.wait().await;
    let errors: Vec<&Value> = player.seen.iter().filter(|v| v["event"] == "error").collect();
    assert_eq!(done["fatal_errors"], 0, "fatal player errors: {errors:?}");
    let played = done["played_seconds"].as_f64().unwrap_or(0.0);
    assert!(played > min_played, "played only {played} s ({ready})");
    assert!(done["frags_by_host"][SECONDARY].as_u64().unwrap_or(0) >= 1 && done["frags_by_host"][PRIMARY].as_u64().unwrap_or(0) >= 2, "{done}");
}
