//! The worker against real RabbitMQ, PostgreSQL, Redis, S3 and ffmpeg, each
//! test in its own world. Media is generated with ffmpeg at test time.

use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use shared::configuration::{Env, Seconds};
use shared::queue::{Publisher, TranscodeJob};
use shared::server::HttpSettings;
use shared::storage::Stored;
use shared::testing::World;
use shared::videos::{NewVideo, Videos};
use transcode_worker::configuration::Settings;
use transcode_worker::startup::Application;
use uuid::Uuid;

struct TestWorker {
    world: World,
    videos: Videos,
    publisher: Publisher,
    metrics_url: String,
    _work: tempfile::TempDir,
}

async fn spawn_worker() -> TestWorker {
    let world = World::new().await;
    let work = tempfile::tempdir().unwrap();
    let mut settings = Settings::from_env(&mut Env::listing());
    settings.http = HttpSettings { addr: "127.0.0.1:0".into(), shutdown_grace: Seconds(Duration::from_secs(1)) };
    settings.backends = world.backends.clone();
    settings.transcode.work_dir = work.path().to_owned();
    settings.transcode.ladder = "480p=1100k,240p=300k".parse().unwrap();
    settings.transcode.preset = "ultrafast".into();
    let app = Application::build(settings).await.expect("worker builds");
    let metrics_url = format!("http://127.0.0.1:{}/metrics", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let videos = Videos::new(world.backends.database.pool().unwrap());
    let publisher = Publisher::new(world.backends.queue.clone());
    TestWorker { world, videos, publisher, metrics_url, _work: work }
}

impl TestWorker {
    /// Stores `bytes` as a source, registers the video and publishes its job.
    async fn submit(&self, bytes: Vec<u8>) -> TranscodeJob {
        let id = Uuid::now_v7();
        let key = shared::layout::source(id);
        let storage = self.world.backends.s3.store();
        storage.put_bytes(&key, bytes.clone().into(), "video/mp4").await.unwrap();
        let stored = Stored { key: key.clone(), size: bytes.len() as u64, sha256: "0".repeat(64) };
        let new = NewVideo { id, title: "t".into(), description: String::new(), content_type: "video/mp4".into(), stored };
        self.videos.insert_uploaded(&new).await.unwrap();
        let job = TranscodeJob::new(id, key);
        self.publisher.publish(&job).await.unwrap();
        job
    }

    async fn wait_for(&self, id: Uuid, status: &str) -> shared::videos::Video {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.videos.get(id).await.unwrap().unwrap();
            if v.status == status {
                return v;
            }
            assert!(v.status != "failed" || status == "failed", "video failed: {:?}", v.error);
            assert!(Instant::now() < deadline, "video still {} after 120 s", v.status);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn attempts(&self, id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM transcode_attempts WHERE video_id = $1").bind(id).fetch_one(self.videos.pool()).await.unwrap()
    }

    async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = self.world.backends.queue.connect().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch.queue_declare(queue, QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await.unwrap();
        q.message_count()
    }

    async fn jobs_with_outcome(&self, outcome: &str) -> u64 {
        let text = reqwest::get(&self.metrics_url).await.unwrap().text().await.unwrap();
        let prefix = format!("transcode_jobs_total{{outcome=\"{outcome}\"");
        text.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    }
}

fn clip(secs: u32, w: u32, h: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.mp4");
    let ok = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={w}x{h}:rate=25"))
        .args(["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg made no clip");
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn a_job_becomes_a_ready_ladder_and_a_redelivery_does_no_work() {
    let w = spawn_worker().await;
    let job = w.submit(clip(4, 640, 360)).await;
    let video = w.wait_for(job.video_id, "ready").await;
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
    assert!((video.duration_seconds.unwrap() - 4.0).abs() < 0.5);

    let renditions = w.videos.renditions(job.video_id).await.unwrap();
    let names: Vec<&str> = renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["240p"], "a 360p source gets no 480p rung");
    assert!(renditions[0].codecs.starts_with("avc1.") && renditions[0].codecs.ends_with(",mp4a.40.2"));

    let storage = w.world.backends.s3.store();
    let keys = storage.list_keys(&shared::layout::hls_prefix(job.video_id)).await.unwrap();
    assert!(keys.iter().any(|k| k.ends_with("/master.m3u8")));
    assert!(keys.iter().any(|k| k.ends_with("/poster.jpg")));
    assert!(keys.iter().any(|k| k.ends_with("/240p/index.m3u8")));

    // The same job again (a redelivery): acknowledged, nothing redone.
    w.publisher.publish(&job).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.jobs_with_outcome("skipped").await < 1 {
        assert!(Instant::now() < deadline, "redelivered job was not settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.attempts(job.video_id).await, 1);
    assert_eq!(w.queue_depth(&w.world.backends.queue.names().jobs_queue).await, 0);
}

#[tokio::test]
async fn bytes_that_are_not_media_fail_once_and_are_dead_lettered() {
    let w = spawn_worker().await;
    let job = w.submit(b"this is a text file, not a video".repeat(100)).await;
    let video = w.wait_for(job.video_id, "failed").await;
    assert!(video.error.as_deref().unwrap().contains("not a media file"), "{:?}", video.error);
    assert_eq!(w.attempts(job.video_id).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.queue_depth(&w.world.backends.queue.names().dead_queue).await != 1 {
        assert!(Instant::now() < deadline, "job did not reach the dead-letter queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(w.world.backends.s3.store().list_keys(&shared::layout::hls_prefix(job.video_id)).await.unwrap().is_empty());
}
