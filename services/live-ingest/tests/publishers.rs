//! Publishers that are too big, too fast, silent, or whose clocks jump,
//! against a real live-ingest (PostgreSQL, Redis, S3, ffmpeg): what is over
//! the configured maximum is refused with its reason whatever the
//! publisher claims; a fast source within the limits is encoded at the
//! ladder's rate; a silent publisher is dropped and its stream ends after
//! the grace period; timestamps that jump forwards or backwards become
//! discontinuities while the publisher stays on air, and never a panic.
//! Also the API's one body: a create request too big to be a title.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics anywhere in this test binary (the app runs in-process: a
/// panic in one of its tasks would otherwise only be a line on stderr).
fn watch_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn no_panics() {
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a task panicked (see stderr)");
}

/// The tags whose timestamps are in `[from, to)` ms.
fn span(tags: &[SourceTag], from: u32, to: u32) -> Vec<SourceTag> {
    tags.iter().filter(|t| t.ts >= from && t.ts < to).cloned().collect()
}

/// The codec headers again, stamped `ts` (as an encoder resends them), then the tags in `[ts, to)`.
fn resumed(tags: &[SourceTag], ts: u32, to: u32) -> Vec<SourceTag> {
    let mut out: Vec<SourceTag> = tags.iter().filter(|t| t.is_header()).map(|t| SourceTag { ts, ..t.clone() }).collect();
    out.extend(span(tags, ts, to));
    out
}

/// An app with `overrides`, a stream, `secs` of a `size`@`fps` source, and a publisher connected with the stream's key.
async fn publishing(overrides: &[(&str, &str)], size: &str, fps: u32, secs: u32) -> (TestApp, Stream, Vec<SourceTag>, Publisher) {
    watch_panics();
    let app = spawn_app(overrides).await;
    let s = app.create_stream().await;
    let tags = source(size, fps, secs);
    let p = Publisher::connect(app.rtmp, &s.key).await.expect("the key is right");
    (app, s, tags, p)
}

#[tokio::test]
async fn an_ingest_taller_than_the_limit_is_refused_by_its_metadata_or_else_its_sps() {
    let (app, s, tags, mut p) = publishing(&[("LIVE_MAX_INPUT_HEIGHT", "240")], "640x360", 30, 2).await;
    p.metadata(640, 360, 30.0).await.unwrap();
    assert!(p.closed_within(Duration::from_secs(5)).await.is_some(), "360p metadata over a 240 limit was not refused");
    assert_eq!(app.refusals("input-too-large").await, 1.0);

    // No metadata: the sequence header's SPS says 360 rows all the same.
    let mut p = Publisher::connect(app.rtmp, &s.key).await.expect("a refused publisher may come back");
    let sent = p.play(&tags, 0).await;
    assert!(sent.is_err(), "a 360p SPS over a 240 limit was not refused");
    assert_eq!(app.refusals("input-too-large").await, 2.0);
    assert_ne!(app.live(&format!("{}/master.m3u8", s.playback)).await.0, 200, "nothing was to be packaged");
    no_panics();
}

#[tokio::test]
async fn an_ingest_faster_than_the_limit_is_refused_by_its_measured_rate() {
    // 60 fps and no metadata claiming so: the timestamps tell.
    let (app, _, tags, mut p) = publishing(&[("LIVE_MAX_INPUT_FPS", "30")], "320x240", 60, 4).await;
    let started = std::time::Instant::now();
    let sent = p.play(&tags, 0).await;
    assert!(sent.is_err(), "60 fps against a limit of 30 was not refused");
    assert!(started.elapsed() < Duration::from_secs(4), "refused only after {:?}", started.elapsed());
    assert_eq!(app.refusals("input-too-large").await, 1.0);
    no_panics();
}

#[tokio::test]
async fn a_60fps_ingest_within_the_limits_is_encoded_at_the_ladder_rate_and_height() {
    let (app, s, tags, mut p) = publishing(&[], "426x240", 60, 8).await;
    p.metadata(426, 240, 60.0).await.unwrap();
    let sending = tokio::spawn(async move { p.play(&tags, 0).await.map(|_| p) });

    let master = app.master(&s, Duration::from_secs(20)).await;
    assert!(master.contains("FRAME-RATE=30.000"), "{master}");
    // The 240 rung only: never above the source; 144p below it.
    assert!(master.contains("x240,") && !master.contains("x360,"), "{master}");
    let media = app.media_path(&s, "240p").await;
    let (_, playlist) = app.live(&media).await;
    let base = media.rsplit_once('/').unwrap().0.to_owned();
    let init = playlist.split("URI=\"").nth(1).and_then(|r| r.split('"').next()).expect("an EXT-X-MAP").to_owned();
    let (seconds, segment) = playlist
        .lines()
        .zip(playlist.lines().skip(1))
        .find_map(|(inf, uri)| Some((inf.strip_prefix("#EXTINF:")?.trim_end_matches(',').parse::<f64>().ok()?, uri.to_owned())))
        .expect("a closed segment");
    let mut file = reqwest::get(format!("{}/live/{base}/{init}", app.base)).await.unwrap().bytes().await.unwrap().to_vec();
    file.extend(reqwest::get(format!("{}/live/{base}/{segment}", app.base)).await.unwrap().bytes().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment.mp4");
    std::fs::write(&path, file).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames,height", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (height, frames) = text.split_once(',').expect("ffprobe decodes the segment");
    assert_eq!(height, "240", "{text}");
    let frames: f64 = frames.parse().unwrap();
    assert!((frames - 30.0 * seconds).abs() <= 1.0, "{frames} frames in {seconds} s: not 30 fps");
    sending.await.unwrap().expect("the publisher stayed on air");
    no_panics();
}

#[tokio::test]
async fn a_silent_publisher_is_dropped_and_its_stream_ends_after_the_grace_period() {
    let (app, s, tags, mut p) = publishing(&[], "320x240", 30, 3).await;
    p.play(&tags, 0).await.expect("three seconds of media are taken");
    assert_eq!(app.stream(&s.id).await["state"], "live");
    // The socket stays open; nothing more is sent. LIVE_IDLE_TIMEOUT is 2 s.
    let took = p.closed_within(Duration::from_secs(8)).await.expect("a silent publisher was not dropped");
    assert!(took >= Duration::from_millis(1500), "dropped after {took:?}, before the idle timeout");
    assert_eq!(app.refusals("idle").await, 1.0);
    // LIVE_GRACE is 2 s; then the stream ends (and its recording goes to the catalogue).
    shared::testing::eventually(Duration::from_secs(30), "the stream ends after the grace period", || async { app.stream(&s.id).await["state"] == "ended" }).await;
    no_panics();
}

#[tokio::test]
async fn timestamps_that_jump_forwards_or_backwards_are_discontinuities_and_the_publisher_stays() {
    // A key frame every second, so every span below starts on one.
    let (app, s, tags, mut p) = publishing(&[], "320x240", 30, 9).await;
    let restarts = |t: &str| shared::testing::metric(t, "live_encoder_restarts_total");
    let before = restarts(&app.metrics().await);
    // 0–3 s as sent; 3–6 s sixty seconds later; 6–9 s thirty seconds earlier than that.
    p.play(&span(&tags, 0, 3_000), 100_000).await.expect("the first span is taken");
    p.play(&resumed(&tags, 3_000, 6_000), 160_000).await.expect("a jump forwards is not a reason to drop the publisher");
    p.play(&resumed(&tags, 6_000, 9_000), 130_000).await.expect("a jump backwards is not a reason to drop the publisher");

    let media = app.media_path(&s, "240p").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let playlist = loop {
        let playlist = app.live(&media).await.1;
        let after = playlist.rsplit("#EXT-X-DISCONTINUITY\n").next().unwrap_or("");
        if playlist.matches("#EXT-X-DISCONTINUITY\n").count() >= 2 && after.contains("#EXT-X-PART:") {
            break playlist;
        }
        assert!(std::time::Instant::now() < deadline, "not two discontinuities with media after them:\n{playlist}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(restarts(&app.metrics().await) - before >= 2.0);
    // The ingest clock never runs backwards, whatever the publisher's did.
    let dates: Vec<&str> = playlist.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{playlist}");
    assert_eq!(app.refusals("encoder-failed").await, 0.0);
    p.check_open().await.expect("the publisher is still on air");
    no_panics();
}

#[tokio::test]
async fn a_create_body_too_big_to_be_a_title_is_refused_as_a_problem_and_creates_nothing() {
    let app = spawn_app(&[]).await;
    let title = "x".repeat(live_ingest::api::BODY_LIMIT);
    let res = app.client.post(format!("{}/api/v1/live", app.base)).json(&serde_json::json!({ "title": title })).send().await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = res.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("at most 16384 bytes"), "{problem}");
    let list: serde_json::Value = app.client.get(format!("{}/api/v1/live", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_publisher_that_pauses_and_resumes_its_clock_plays_on_after_a_discontinuity() {
    // Silence shorter than the idle timeout: the publisher stays.
    let (app, s, tags, mut p) = publishing(&[("LIVE_IDLE_TIMEOUT", "10s")], "320x240", 30, 8).await;
    p.play(&span(&tags, 0, 3_000), 0).await.unwrap();
    // Four seconds of nothing, then the stream resumes where its clock
    // stopped (no jump in the timestamps): behind real time by four seconds
    // for good, which must not keep the encoder from starting again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    p.play(&span(&tags, 3_000, 8_000), 0).await.expect("a paused publisher is not dropped");
    let (_, playlist) = app.live(&app.media_path(&s, "240p").await).await;
    let after = playlist.split("#EXT-X-DISCONTINUITY\n").nth(1).expect("a discontinuity where the encoder was restarted");
    // Most of the five seconds after the pause are there (the backlog and the wait for a key frame cost a little).
    let parts = after.matches("#EXT-X-PART:").count();
    assert!(parts >= 6, "only {parts} parts after the pause:\n{playlist}");
    no_panics();
}
