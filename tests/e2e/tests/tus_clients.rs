//! The official tus clients, unchanged — tuspy (PyPI) and tus-js-client
//! (npm, under Node) — against the native stack's front doors: 200 MiB
//! uploads byte-identical in S3, a cut-off upload resumed by a fresh client
//! process, a 4-way parallel (concatenated) upload, and an upload that
//! survives the service being SIGKILLed and restarted. Every upload must
//! end as a `ready` video, owned by the key it was sent with.
//!
//! The clients send the stack's creator key (`$STACK_DIR/creator-key`) the
//! way apps do, on every request (tus-js-client's `headers`, tuspy's
//! `TusClient(headers=…)`); without one, both fail at creation with 401 and
//! nothing is stored.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::{free_port, sha256_file, sha256_object, wait_until_settled, Stack};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

/// 200 MiB of real video, made once per test binary.
struct Source {
    path: PathBuf,
    sha256: String,
    size: u64,
    _dir: tempfile::TempDir,
}

static SOURCE: OnceCell<Source> = OnceCell::const_new();

async fn source() -> &'static Source {
    SOURCE
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let path = e2e::make_large_clip(dir.path(), "big.mkv", 200 << 20).unwrap();
            let size = std::fs::metadata(&path).unwrap().len();
            Source {
                sha256: sha256_file(&path).unwrap(),
                path,
                size,
                _dir: dir,
            }
        })
        .await
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The key the client scripts send (`API_KEY`, read by both): the stack's
/// creator key, in the environment rather than argv so `ps` does not show it.
fn with_key(mut c: Command, key: Option<&str>) -> Command {
    match key {
        Some(k) => c.env("API_KEY", k),
        None => c.env_remove("API_KEY"),
    };
    c
}

fn creator_key() -> String {
    Stack::from_env().creator_key().expect("the stack's creator key")
}

fn tus_js(endpoint: &str, file: &PathBuf, args: &[&str]) -> Command {
    tus_js_as(Some(&creator_key()), endpoint, file, args)
}

fn tus_js_as(key: Option<&str>, endpoint: &str, file: &PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new("node");
    c.arg(clients_dir().join("tus_js_upload.mjs"))
        .arg(endpoint)
        .arg(file)
        .args(args);
    with_key(c, key)
}

fn tuspy(endpoint: &str, file: &PathBuf, store: &PathBuf, args: &[&str]) -> Command {
    tuspy_as(Some(&creator_key()), endpoint, file, store, args)
}

fn tuspy_as(key: Option<&str>, endpoint: &str, file: &PathBuf, store: &PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(clients_dir().join("tuspy_upload.py"))
        .arg(endpoint)
        .arg(file)
        .arg("--store")
        .arg(store)
        .args(args);
    with_key(c, key)
}

/// A running client and the JSON lines it printed so far.
struct Client {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Client {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("client starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(600), self.lines.next_line())
            .await
            .expect("client went silent")
            .unwrap()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|_| panic!("client printed {line:?}")))
    }

    async fn url(&mut self) -> String {
        let v = self
            .next()
            .await
            .expect("the client announces its upload URL");
        v["url"].as_str().expect("url line").to_owned()
    }

    /// Waits for {"done"} and a clean exit; returns the upload URL.
    async fn done(mut self) -> String {
        let mut url = None;
        while let Some(v) = self.next().await {
            if let Some(u) = v["done"].as_str() {
                url = Some(u.to_owned());
            }
        }
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "client failed: {status}");
        url.expect("the client reported success")
    }
}

async fn offset(http: &reqwest::Client, url: &str) -> u64 {
    let res = http
        .head(url)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    res.headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

async fn wait_for_offset(http: &reqwest::Client, url: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while offset(http, url).await < at_least {
        assert!(
            Instant::now() < deadline,
            "upload never reached {at_least} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The upload's object is the source byte for byte, its HEAD links to the
/// video, and the video becomes `ready`.
async fn assert_became_ready_video(stack: &Stack, url: &str) {
    let src = source().await;
    let http = stack.client().unwrap();
    let res = http
        .head(url)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    let link = res
        .headers()
        .get("link")
        .expect("a finished upload links to its video")
        .to_str()
        .unwrap()
        .to_owned();
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(link, format!("</api/v1/videos/{id}>; rel=\"video\""));
    assert_eq!(
        res.headers()["upload-offset"].to_str().unwrap(),
        src.size.to_string()
    );
    assert_eq!(
        sha256_object(&format!("sources/{id}")).await.unwrap(),
        src.sha256,
        "S3 object differs from the source"
    );
    let v = wait_until_settled(&http, &stack.nginx_http, id, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(v["status"], "ready", "{v}");
    // The hash the server carried across PATCHes (as a saved midstate) is the file's.
    let pool = e2e::database().await.unwrap();
    let (stored, owner): (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT source_sha256, owner_id FROM videos WHERE id = $1::uuid").bind(id).fetch_one(&pool).await.unwrap();
    assert_eq!(stored, src.sha256);
    // The video is the key's principal's.
    let key = shared::auth::ApiKey::parse(&stack.creator_key().unwrap()).expect("the creator key is a key");
    let principal: uuid::Uuid =
        sqlx::query_scalar("SELECT principal_id FROM api_keys WHERE hash = $1").bind(&key.hash()[..]).fetch_one(&pool).await.unwrap();
    assert_eq!(owner, Some(principal), "the video belongs to the creator whose key uploaded it");
}

/// Runs a client to its end; returns its exit status and its last JSON line.
async fn run_to_end(mut cmd: Command) -> (std::process::ExitStatus, Value) {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.stderr(Stdio::inherit()).output()).await.expect("the client ends").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_else(|| panic!("the client printed nothing"));
    (out.status, serde_json::from_str(last).unwrap_or_else(|_| panic!("client printed {last:?}")))
}

/// Uploads in `uploads` whose metadata names `title`.
async fn uploads_titled(title: &str) -> i64 {
    let pool = e2e::database().await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM uploads WHERE \
         convert_from(decode(substring(metadata from 'filename ([A-Za-z0-9+/=]+)'), 'base64'), 'UTF8') = $1",
    )
    .bind(title)
    .fetch_one(&pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn without_a_key_both_official_clients_fail_at_creation_with_401_and_store_nothing() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let dir = tempfile::tempdir().unwrap();
    // A real (short) video, so the accepted upload below ends as a normal one.
    let file = e2e::make_clip(dir.path(), "short.mp4", 2, 320, 240).unwrap();
    let title = format!("no-key-{}", uuid::Uuid::new_v4());
    let endpoint = format!("{}/api/v1/uploads/", stack.nginx_http);

    let (status, line) = run_to_end(tus_js_as(None, &endpoint, &file, &["--title", &title])).await;
    assert!(!status.success(), "tus-js-client succeeded without a key: {line}");
    assert_eq!(line["status"], 401, "tus-js-client: {line}");
    let store = dir.path().join("urls.json");
    let (status, line) = run_to_end(tuspy_as(None, &endpoint, &file, &store, &["--title", &title])).await;
    assert!(!status.success(), "tuspy succeeded without a key: {line}");
    assert_eq!(line["status"], 401, "tuspy: {line}");
    assert_eq!(uploads_titled(&title).await, 0, "a refused creation stores no upload");

    // The same clients, the same file, with the key: accepted.
    let url = Client::spawn(tus_js(&endpoint, &file, &["--title", &title])).done().await;
    assert!(url.contains("/api/v1/uploads/"), "{url}");
    assert_eq!(uploads_titled(&title).await, 1);
    let id = url.rsplit('/').next().unwrap();
    let v = wait_until_settled(&stack.client().unwrap(), &stack.nginx_http, id, Duration::from_secs(300)).await.unwrap();
    assert_eq!(v["status"], "ready", "{v}");
}

#[tokio::test]
async fn tuspy_uploads_200_mib_through_nginx_with_checksums_and_it_becomes_a_ready_video() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let src = source().await;
    let store = tempfile::tempdir().unwrap();
    let endpoint = format!("{}/api/v1/uploads/", stack.nginx_http);
    let url = Client::spawn(tuspy(
        &endpoint,
        &src.path,
        &store.path().join("urls.json"),
        &["--chunk-size", &(32 << 20).to_string(), "--checksum"],
    ))
    .done()
    .await;
    assert_became_ready_video(&stack, &url).await;
}

#[tokio::test]
async fn tus_js_client_uploads_200_mib_through_haproxy_and_it_becomes_a_ready_video() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let src = source().await;
    let endpoint = format!("{}/api/v1/uploads/", stack.haproxy);
    let url = Client::spawn(tus_js(
        &endpoint,
        &src.path,
        &["--chunk-size", &(64 << 20).to_string()],
    ))
    .done()
    .await;
    assert_became_ready_video(&stack, &url).await;
}

#[tokio::test]
async fn tus_js_client_parallel_upload_of_four_partials_concatenates_into_a_ready_video() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let src = source().await;
    let endpoint = format!("{}/api/v1/uploads/", stack.nginx_http);
    let url = Client::spawn(tus_js(&endpoint, &src.path, &["--parallel", "4"]))
        .done()
        .await;
    let http = stack.client().unwrap();
    let head = http
        .head(&url)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    let concat = head.headers()["upload-concat"].to_str().unwrap().to_owned();
    assert_eq!(
        concat
            .strip_prefix("final;")
            .expect("a final upload")
            .split(' ')
            .count(),
        4,
        "{concat}"
    );
    assert_became_ready_video(&stack, &url).await;
}

#[tokio::test]
async fn uploads_cut_off_halfway_resume_in_a_fresh_client_process() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let src = source().await;
    let http = stack.client().unwrap();
    let endpoint = format!("{}/api/v1/uploads/", stack.nginx_http);

    // tus-js-client kills itself in the middle of its one big PATCH.
    let mut first = Client::spawn(tus_js(&endpoint, &src.path, &["--kill-at", "0.5"]));
    let url = first.url().await;
    assert!(
        !first.child.wait().await.unwrap().success(),
        "the first client was killed"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = offset(&http, &url).await;
    assert!(
        kept > 0 && kept < src.size,
        "the cut PATCH kept {kept} of {} bytes",
        src.size
    );
    let resumed = Client::spawn(tus_js(&endpoint, &src.path, &["--resume-url", &url]))
        .done()
        .await;
    assert_eq!(resumed, url);
    assert_became_ready_video(&stack, &url).await;

    // tuspy is killed from outside mid-PATCH; a fresh process finds the URL in its own storage.
    let store = tempfile::tempdir().unwrap();
    let urls = store.path().join("urls.json");
    let whole = src.size.to_string();
    let mut first = Client::spawn(tuspy(
        &endpoint,
        &src.path,
        &urls,
        &["--chunk-size", &whole],
    ));
    let url = first.url().await;
    wait_for_offset(&http, &url, src.size / 2).await;
    first.child.kill().await.unwrap();
    let mut second = Client::spawn(tuspy(
        &endpoint,
        &src.path,
        &urls,
        &["--chunk-size", &whole],
    ));
    let line = second.next().await.unwrap();
    assert_eq!(
        line["url"], url,
        "the fresh tuspy process resumes the same upload"
    );
    assert!(
        line["resumed_at"].as_u64().unwrap() >= src.size / 2,
        "{line}"
    );
    assert_eq!(second.done().await, url);
    assert_became_ready_video(&stack, &url).await;
}

/// Our own upload-chunked process, with the stack's configuration on a
/// free port; SIGKILLed when dropped.
fn spawn_service(port: u16) -> e2e::Process {
    e2e::spawn_stack_service("upload-chunked", "upload-chunked", &[("HTTP_ADDR", format!("127.0.0.1:{port}")), ("RUST_LOG", "warn".into())])
}

async fn wait_ready(port: u16) {
    e2e::wait_ready(&format!("http://127.0.0.1:{port}/health/ready"), Duration::from_secs(30)).await.expect("upload-chunked did not become ready");
}

#[tokio::test]
async fn the_service_killed_mid_upload_restarts_and_the_upload_resumes_and_completes() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let src = source().await;
    let port = free_port();
    let service = spawn_service(port);
    wait_ready(port).await;
    let endpoint = format!("http://127.0.0.1:{port}/api/v1/uploads/");
    let mut client = Client::spawn(tus_js(
        &endpoint,
        &src.path,
        &["--chunk-size", &(16 << 20).to_string()],
    ));
    let url = client.url().await;
    let http = stack.client().unwrap();
    wait_for_offset(&http, &url, src.size / 3).await;
    drop(service);
    let before_restart = Instant::now();
    let _service = spawn_service(port);
    wait_ready(port).await;
    assert!(
        offset(&http, &url).await >= src.size / 3,
        "committed bytes survive the crash"
    );
    let done = client.done().await;
    assert_eq!(done, url);
    assert!(before_restart.elapsed() < Duration::from_secs(300));
    assert_became_ready_video(&stack, &url).await;
}
