//! Worker test support: an isolated world (database, bucket, AMQP and Redis
//! prefixes) per test, workers in-process or as real processes, and test
//! media made with ffmpeg at test time. Nothing is mocked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use shared::auth::Role;
use shared::configuration::{Env, Seconds};
use shared::playback::ContentKeys;
use shared::queue::{Publisher, TranscodeJob};
use shared::server::HttpSettings;
use shared::storage::Storage;
use shared::testing::World;
use shared::videos::{Video, Videos, Visibility};
use transcode_worker::configuration::{Mode, Settings};
use transcode_worker::startup::Application;
use uuid::Uuid;

pub const LADDER: &str = "480p=1100k,240p=300k";
/// The worker's `CONTENT_MASTER_KEYS` in tests (dev only, never a deployment's).
pub const MASTER_KEYS: &str = "test:WnOTtQqPy-I_5SYL3AcvyKXe2RBFyDYFsb4recb5eUY";

pub struct Lab {
    pub world: World,
    pub videos: Videos,
    pub publisher: Publisher,
    pub storage: Storage,
    pub scratch: tempfile::TempDir,
}

/// A worker running in this process.
pub struct Worker {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Worker {
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap()
    }

    /// `transcode_jobs_total{outcome=…}` of this worker.
    pub async fn jobs(&self, outcome: &str) -> u64 {
        metric(&self.metrics().await, "transcode_jobs_total", &format!("outcome=\"{outcome}\"")) as u64
    }
}

/// The value of the first sample of `name` whose labels contain `label`.
pub fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A worker process that can be SIGKILLed, logging to a file in the scratch
/// folder so a test that fails can say what the process was doing.
pub struct Process {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Process {
    /// The last `lines` lines the process logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lab {
    pub async fn new() -> Self {
        let world = World::new().await;
        let pool = world.backends.database.pool().unwrap();
        let publisher = Publisher::new(world.backends.queue.clone());
        let storage = world.backends.s3.store();
        storage.ensure_bucket().await.unwrap();
        Self { videos: Videos::new(pool), publisher, storage, world, scratch: tempfile::tempdir().unwrap() }
    }

    /// Settings for a worker in this world; tweak before [`Lab::spawn`].
    pub fn settings(&self, mode: Mode, concurrency: u16) -> Settings {
        let mut s = Settings::from_env(&mut Env::listing());
        s.http = HttpSettings { addr: "127.0.0.1:0".into(), shutdown_grace: Seconds(Duration::from_secs(1)) };
        s.backends = self.world.backends.clone();
        s.master_keys = MASTER_KEYS.parse().unwrap();
        s.intake.mode = mode;
        s.intake.concurrency = concurrency;
        s.intake.retry_base = Duration::from_millis(500);
        s.transcode.work_dir = self.scratch.path().join("work");
        s.transcode.ladder = LADDER.parse().unwrap();
        s.transcode.preset = "ultrafast".into();
        s
    }

    pub async fn spawn(&self, settings: Settings) -> Worker {
        let app = Application::build(settings).await.expect("worker builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Worker { base, stop: Some(tx) }
    }

    pub async fn worker(&self, mode: Mode, concurrency: u16) -> Worker {
        self.spawn(self.settings(mode, concurrency)).await
    }

    /// The worker binary as its own process, on this world, encoding with
    /// `preset`.
    pub fn process(&self, mode: Mode, preset: &str) -> Process {
        let log = self.scratch.path().join(format!("worker-{}.log", Uuid::new_v4()));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_transcode-worker"))
            .envs(self.world.env())
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("WORKER_MODE", mode.as_str())
            .env("WORK_DIR", self.scratch.path().join("work"))
            .env("TRANSCODE_LADDER", LADDER)
            .env("CONTENT_MASTER_KEYS", MASTER_KEYS)
            .env("FFMPEG_PRESET", preset)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("worker log file"))
            .spawn()
            .expect("worker binary starts");
        Process { child, log }
    }

    /// Stores `bytes` as a source and registers the video, without a job.
    pub async fn register(&self, bytes: &[u8]) -> TranscodeJob {
        shared::testing::register_source(&self.storage, &self.videos, bytes).await.unwrap()
    }

    /// Registers and publishes.
    pub async fn submit(&self, bytes: &[u8]) -> TranscodeJob {
        let job = self.register(bytes).await;
        self.publisher.publish(&job).await.unwrap();
        job
    }

    /// Registers a video with `visibility` and publishes its job.
    pub async fn submit_as(&self, bytes: &[u8], visibility: Visibility) -> TranscodeJob {
        let job = self.register(bytes).await;
        self.videos.set_visibility(job.video_id, visibility).await.unwrap().expect("video row");
        self.publisher.publish(&job).await.unwrap();
        job
    }

    /// The content keys as the worker stores them.
    pub fn content_keys(&self) -> ContentKeys {
        ContentKeys::new(self.videos.pool().clone(), MASTER_KEYS.parse().unwrap())
    }

    /// An HTTP client sending a new key of `role` on every request.
    pub async fn client_as(&self, role: Role) -> reqwest::Client {
        let (key, _) = self.world.api_key(role).await;
        reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).build().unwrap()
    }

    pub async fn video(&self, id: Uuid) -> Option<Video> {
        self.videos.get(id).await.unwrap()
    }

    pub async fn wait_for(&self, id: Uuid, status: &str, within: Duration) -> Video {
        let deadline = Instant::now() + within;
        loop {
            let v = self.video(id).await.expect("video row exists");
            if v.status == status {
                return v;
            }
            assert!(v.status != "failed" || status == "failed", "video failed: {:?}", v.error);
            assert!(Instant::now() < deadline, "video still {} after {within:?}", v.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `check` every 100 ms until it holds, failing after `within`.
    pub async fn eventually<F, Fut>(&self, what: &str, within: Duration, check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        shared::testing::eventually(within, what, check).await
    }

    /// (attempt, outcome, error) per attempt of a video, oldest first.
    pub async fn attempts(&self, id: Uuid) -> Vec<(i32, String, Option<String>)> {
        sqlx::query_as("SELECT attempt, outcome, error FROM transcode_attempts WHERE video_id = $1 ORDER BY started_at, id")
            .bind(id)
            .fetch_all(self.videos.pool())
            .await
            .unwrap()
    }

    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = self.world.backends.queue.connect().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch.queue_declare(queue, QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await.unwrap();
        let _ = conn.close(200, "").await;
        q.message_count()
    }

    pub fn names(&self) -> shared::queue::Topology {
        self.world.backends.queue.names()
    }

    /// Every key under the video's HLS folder.
    pub async fn hls_keys(&self, id: Uuid) -> Vec<String> {
        self.storage.list_keys(&shared::layout::hls_prefix(id)).await.unwrap()
    }

    /// Copies the committed attempt's folder to a local directory, for players.
    pub async fn download_served(&self, video: &Video) -> tempfile::TempDir {
        let prefix = shared::layout::served_prefix(video.master_key.as_deref().unwrap()).unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        for key in self.storage.list_keys(&prefix).await.unwrap() {
            let path = dir.path().join(&key[prefix.len()..]);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            self.storage.download_to_file(&key, &path).await.unwrap();
        }
        dir
    }
}

/// A test clip from lavfi: testsrc2 plus a sine tone, H.264/AAC in MP4.
pub fn clip(secs: u32, w: u32, h: u32) -> Vec<u8> {
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

/// Runs a command and returns its stdout, failing the test on a non-zero exit.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// An ffmpeg stand-in that hangs (as a stuck decode would) the first
/// `hangs` times it is asked to encode, then runs the real ffmpeg.
pub fn hanging_ffmpeg(dir: &Path, hangs: u32) -> PathBuf {
    let script = dir.join("ffmpeg-that-hangs");
    let count = dir.join("ffmpeg-calls");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = -version ] && exec ffmpeg -version\nn=$(cat '{c}' 2>/dev/null || echo 0)\necho $((n + 1)) > '{c}'\n[ \"$n\" -lt {hangs} ] && exec sleep 600\nexec ffmpeg \"$@\"\n",
            c = count.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}
