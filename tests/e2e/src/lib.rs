//! Helpers for the end-to-end tests and the benchmark: the front doors'
//! addresses, test media made with ffmpeg, and ffmpeg/ffprobe as the player.
//!
//! Everything here talks to the native stack (`scripts/stack up`) over
//! loopback; nothing is simulated.

pub mod conformance;

pub mod front_door;
pub mod panics;
pub mod players;

pub use panics::PanicWatch;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// Where the stack answers. Overridable for a stack on other ports.
pub struct Stack {
    pub nginx_http: String,
    pub nginx_https: String,
    pub haproxy: String,
    pub edge_1: String,
    pub stack_dir: PathBuf,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `p` quantile of sorted samples, by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Stack {
    pub fn from_env() -> Self {
        Self {
            nginx_http: var("E2E_NGINX_HTTP", "http://127.0.0.1:8080"),
            nginx_https: var("E2E_NGINX_HTTPS", "https://127.0.0.1:8443"),
            haproxy: var("E2E_HAPROXY", "http://127.0.0.1:8081"),
            edge_1: var("E2E_EDGE_1", "http://127.0.0.1:8011"),
            stack_dir: std::env::var("STACK_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join(".stack")),
        }
    }

    /// A client that trusts the stack's local CA, can speak HTTP/2 and sends
    /// the stack's creator key on every request (as tus clients do).
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        self.client_with(Some(&self.creator_key()?))
    }

    /// The same client without any key: what an anonymous viewer sends.
    pub fn anonymous_client(&self) -> anyhow::Result<reqwest::Client> {
        self.client_with(None)
    }

    /// The same client with `key` (None: anonymous).
    pub fn client_with(&self, key: Option<&str>) -> anyhow::Result<reqwest::Client> {
        let pem = std::fs::read(self.stack_dir.join("tls/ca.crt")).context("stack CA certificate (run scripts/setup)")?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse()?);
        }
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .default_headers(headers)
            .timeout(Duration::from_secs(600))
            .build()?)
    }

    /// The creator key `scripts/stack up` wrote.
    pub fn creator_key(&self) -> anyhow::Result<String> {
        self.key_file("creator-key")
    }

    /// The admin key `scripts/stack up` wrote (the bootstrap key).
    pub fn admin_key(&self) -> anyhow::Result<String> {
        self.key_file("admin-key")
    }

    fn key_file(&self, name: &str) -> anyhow::Result<String> {
        let path = self.stack_dir.join(name);
        Ok(std::fs::read_to_string(&path).with_context(|| format!("{} (scripts/stack up writes it)", path.display()))?.trim().to_owned())
    }
}

/// A test clip from lavfi: testsrc2 video plus a sine tone, H.264/AAC in MP4.
pub fn make_clip(dir: &Path, name: &str, secs: u32, width: u32, height: u32) -> anyhow::Result<PathBuf> {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate=30"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&out)
        .status()?;
    if !status.success() {
        bail!("ffmpeg could not make the test clip");
    }
    Ok(out)
}

/// A clip of at least `min_bytes`: uncompressed 640x360 video plus PCM audio
/// in Matroska, so its size is known in advance and it costs no encoding
/// time to make, while remaining real video every transcoder accepts.
pub fn make_large_clip(dir: &Path, name: &str, min_bytes: u64) -> anyhow::Result<PathBuf> {
    const FRAME_BYTES: u64 = 640 * 360 * 3 / 2;
    let frames = min_bytes / FRAME_BYTES + 1;
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-frames:v", &frames.to_string(), "-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", "-shortest"])
        .arg(&out)
        .status()?;
    if !status.success() {
        bail!("ffmpeg could not make the large test clip");
    }
    Ok(out)
}

/// Writes `len` bytes of pseudo-random, incompressible data (xorshift), the
/// benchmarks' upload payload.
pub async fn write_random(path: &Path, len: u64) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path).await?;
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..len / buf.len() as u64 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).await?;
    }
    f.flush().await?;
    Ok(())
}

/// SHA-256 of a local file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// SHA-256 of an object in the stack's bucket (read from the same S3_*
/// variables the services use), streamed.
pub async fn sha256_object(key: &str) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut env = shared::configuration::Env::from_process();
    let storage = shared::storage::S3Settings::from_env(&mut env).store();
    let obj = storage.get(key).await?.with_context(|| format!("object {key} does not exist"))?;
    let mut body = obj.body;
    let mut h = sha2::Sha256::new();
    while let Some(bytes) = body.try_next().await? {
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// Uploads a file as a raw streaming body.
pub async fn upload_file(client: &reqwest::Client, base: &str, path: &Path, title: &str) -> anyhow::Result<reqwest::Response> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
    Ok(client
        .post(format!("{base}/api/v1/videos"))
        .query(&[("title", title)])
        .header("content-type", "video/mp4")
        .header("content-length", len)
        .body(body)
        .send()
        .await?)
}

/// Polls a video until it is `ready` or `failed` (bounded by `timeout`).
pub async fn wait_until_settled(client: &reqwest::Client, base: &str, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v: Value = client.get(format!("{base}/api/v1/videos/{id}")).send().await?.error_for_status()?.json().await?;
        match v["status"].as_str() {
            Some("ready") | Some("failed") => return Ok(v),
            _ if Instant::now() > deadline => bail!("video {id} still {} after {timeout:?}", v["status"]),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A clip made now, uploaded through `base` as `title` and transcoded:
/// the ready video's id. A failed transcode fails the test with its error.
pub async fn ready_clip(client: &reqwest::Client, base: &str, title: &str, secs: u32, width: u32, height: u32, within: Duration) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = make_clip(dir.path(), &format!("{title}.mp4"), secs, width, height).expect("clip");
    let created: Value = upload_file(client, base, &clip, title).await.expect("upload").json().await.expect("upload answer");
    let id = created["id"].as_str().expect("video id").to_owned();
    let video = wait_until_settled(client, base, &id, within).await.expect("video settles");
    assert_eq!(video["status"], "ready", "{}", video["error"]);
    id
}

/// A 320×180 clip of `secs` made now, uploaded through `base` with
/// `visibility` (public, unlisted, private) and transcoded: the ready video's id.
pub async fn ready_clip_visible(client: &reqwest::Client, base: &str, title: &str, visibility: &str, secs: u32, within: Duration) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = make_clip(dir.path(), &format!("{title}.mp4"), secs, 320, 180).expect("clip");
    let r = client
        .post(format!("{base}/api/v1/videos"))
        .query(&[("title", title), ("visibility", visibility)])
        .header("content-type", "video/mp4")
        .body(std::fs::read(&clip).expect("clip bytes"))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let id = r.json::<Value>().await.expect("upload answer")["id"].as_str().expect("video id").to_owned();
    let video = wait_until_settled(client, base, &id, within).await.expect("video settles");
    assert_eq!(video["status"], "ready", "{}", video["error"]);
    assert_eq!(video["visibility"], visibility);
    id
}

/// Decodes everything behind `url` with ffmpeg (every stream of every variant).
pub fn decode_fully(url: &str) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"]).output()?;
    if !out.status.success() || !out.stderr.is_empty() {
        bail!("ffmpeg could not decode {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn ffprobe(args: &[&str], url: &str) -> anyhow::Result<String> {
    let out = Command::new("ffprobe").args(["-v", "error"]).args(args).arg(url).output()?;
    if !out.status.success() {
        bail!("ffprobe {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub fn duration(url: &str) -> anyhow::Result<f64> {
    Ok(ffprobe(&["-show_entries", "format=duration", "-of", "csv=p=0"], url)?.trim().parse()?)
}

/// Presentation times of the video keyframes, in milliseconds.
pub fn keyframe_times_ms(url: &str) -> anyhow::Result<Vec<i64>> {
    let out = ffprobe(&["-select_streams", "v:0", "-skip_frame", "nokey", "-show_entries", "frame=pts_time", "-of", "csv=p=0"], url)?;
    Ok(out.lines().filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok()).map(|t| (t * 1000.0).round() as i64).collect())
}

/// (URI, attributes line) of each variant in a master playlist.
pub fn variants(master: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = master.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("#EXT-X-STREAM-INF:"))
        .map(|w| (w[1].trim().to_owned(), w[0].to_owned()))
        .collect()
}

/// Every object a rendition playlist references (init first), as URIs relative to it.
pub fn media_objects(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            out.push(rest.trim_end_matches('"').to_owned());
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push(line.to_owned());
        }
    }
    out
}

pub use shared::testing::metric;

/// A series' value on a server's `/metrics` page, summed over its labels.
pub async fn scrape(base: &str, name: &str) -> anyhow::Result<f64> {
    Ok(metric(&reqwest::get(format!("{base}/metrics")).await?.text().await?, name))
}

/// The catalogue database, for assertions on attempts.
pub async fn database() -> anyhow::Result<sqlx::PgPool> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/videos".into());
    Ok(sqlx::PgPool::connect(&url).await?)
}

/// A loopback port nobody listens on right now, for a service a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A service binary a test or benchmark started itself, SIGKILLed when
/// dropped (however the test ends: a crash is what the restart tests want).
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffmpeg publishing a test pattern of `size` at 30 fps with a tone to
/// `rtmp` (`rtmp://host:1935/live/KEY`) for `secs`, in real time, as an
/// encoder would (x264 zerolatency, a key frame a second, AAC), with the
/// wall clock and its own timestamp burned in: what a person compares with
/// a clock to see glass-to-glass latency (tests measure it from
/// PROGRAM-DATE-TIME).
pub fn publish_live(rtmp: &str, secs: u32, size: &str) -> Process {
    let child = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=30:duration={secs}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={secs}")])
        .args(["-vf", "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:fontsize=36:fontcolor=white:box=1:boxcolor=black@0.6:x=16:y=16:text='%{localtime\\:%T} rtmp %{pts\\:hms}'"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv", rtmp])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg starts");
    Process(child)
}

/// A workspace binary: beside a benchmark binary, one folder up from a test
/// binary (those live in `deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("binary folder");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target folder") } else { dir };
    dir.join(name)
}

/// The native stack's environment of one service (`scripts/stack env NAME`).
pub fn stack_env(service: &str) -> Vec<(String, String)> {
    let out = Command::new(repo().join("scripts/stack")).args(["env", service]).output().expect("scripts/stack runs");
    assert!(out.status.success(), "scripts/stack env {service} failed");
    String::from_utf8(out.stdout).expect("utf-8").lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Starts `binary` with exactly the stack's environment of `service` plus
/// `overrides`. Its output is appended to `e2e-{service}.log` among the
/// stack's logs, where [`PanicWatch`] and `scripts/test` look for panics.
pub fn spawn_stack_service(service: &str, binary_name: &str, overrides: &[(&str, String)]) -> Process {
    let logs = Stack::from_env().stack_dir.join("logs");
    let log = std::fs::create_dir_all(&logs)
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("e2e-{service}.log"))))
        .unwrap_or_else(|e| panic!("log file for {service} in {}: {e}", logs.display()));
    let child = Command::new(binary(binary_name))
        .env_clear()
        .envs(stack_env(service))
        .envs(overrides.iter().map(|(k, v)| (*k, v)))
        .stdout(log.try_clone().expect("log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary_name} starts: {e}"));
    Process(child)
}

/// Polls `url` until it answers 2xx, for at most `within`.
pub async fn wait_ready(url: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
        if Instant::now() > deadline {
            bail!("{url} not ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
