//! Hostile sources: files that are not videos but make ffmpeg open other
//! files or URLs (a DASH manifest, an HLS playlist, an ffconcat script, all
//! sent as `video/mp4`), and sources whose shape or rate would cost the
//! worker unbounded memory or time. Each ends `failed` with the catalogued
//! reason (or, for a fast source, is clamped), nothing is published, and the
//! files and listeners they name are never read.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use transcode_worker::configuration::Mode;

/// What a manifest points at.
fn manifests(target: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "dash",
            format!(
                r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
<Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="100000" width="320" height="240"><BaseURL>{target}</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>
"#
            ),
        ),
        ("hls", format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n")),
        ("concat", format!("ffconcat version 1.0\nfile '{target}'\n")),
    ]
}

async fn assert_refused(lab: &Lab, bytes: &[u8], code_words: &str) -> shared::videos::Video {
    let job = lab.submit(bytes).await;
    let video = lab.wait_for(job.video_id, "failed", Duration::from_secs(60)).await;
    let why = video.error.clone().unwrap_or_default();
    assert!(why.contains(code_words), "reason {why:?} should say {code_words:?}");
    assert!(!why.contains("ffprobe") && !why.contains("ffmpeg") && !why.contains(" @ 0x"), "no tool output reaches the creator: {why:?}");
    assert!(lab.hls_keys(job.video_id).await.is_empty(), "nothing is published for {why:?}");
    video
}

#[tokio::test]
async fn manifests_naming_a_file_on_the_workers_disk_are_refused_and_publish_nothing() {
    let lab = Lab::new().await;
    // Another creator's source, on the worker's own disk, at a known path.
    let secret = lab.scratch.path().join("someone-elses-source.mp4");
    std::fs::write(&secret, clip(2, 320, 240)).unwrap();
    let _w = lab.worker(Mode::Push, 2).await;
    for target in [secret.display().to_string(), format!("file:{}", secret.display())] {
        for (kind, text) in manifests(&target) {
            let v = assert_refused(&lab, text.as_bytes(), "not accepted").await;
            assert!(v.error.as_deref().unwrap().contains(&format!("a {kind} file")), "{kind}: {:?}", v.error);
        }
    }
}

#[tokio::test]
async fn manifests_naming_a_loopback_url_are_refused_and_the_listener_is_never_reached() {
    let lab = Lab::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let accepting = tokio::spawn(async move {
        while let Ok((_sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let _w = lab.worker(Mode::Push, 2).await;
    for target in [format!("http://127.0.0.1:{port}/video.mp4"), format!("tcp://127.0.0.1:{port}")] {
        for (_, text) in manifests(&target) {
            assert_refused(&lab, text.as_bytes(), "not accepted").await;
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the worker connected to the URL a manifest named");
    accepting.abort();
}

#[tokio::test]
async fn bytes_that_are_no_media_at_all_get_the_catalogued_reason() {
    let lab = Lab::new().await;
    let _w = lab.worker(Mode::Pull, 1).await;
    assert_refused(&lab, &[0u8; 4096], "not a media file").await;
}

fn lavfi_clip(size: &str, rate: u32, secs: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.mp4");
    run(std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate={rate}"))
        .args(["-t", &secs.to_string(), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&out));
    std::fs::read(out).unwrap()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// The worker binary as users run it: a needle-shaped source is refused
/// before any encode (its thumbnails alone would have needed gigabytes),
/// a 240 fps source is encoded at 60, and the process's peak memory stays
/// small throughout.
#[tokio::test]
async fn a_needle_shaped_source_is_refused_and_a_240_fps_one_clamped_in_bounded_memory() {
    let lab = Lab::new().await;
    let mut worker = lab.process(Mode::Pull, "ultrafast");
    assert_refused(&lab, &lavfi_clip("16x4096", 25, 1), "aspect ratio").await;

    let job = lab.submit(&lavfi_clip("320x180", 240, 2)).await;
    lab.wait_for(job.video_id, "ready", Duration::from_secs(120)).await;
    let renditions = lab.videos.renditions(job.video_id).await.unwrap();
    let rates: Vec<f64> = renditions.iter().filter(|r| r.width > 0).map(|r| r.frame_rate).collect();
    assert!(!rates.is_empty() && rates.iter().all(|r| (*r - 60.0).abs() < 0.01), "clamped to 60 fps: {rates:?}");

    let peak = peak_rss_mib(worker.child.id());
    assert!(peak < 400.0, "worker peak RSS {peak:.0} MiB");
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
}
