//! upload-http2 against real PostgreSQL, RabbitMQ, Redis and S3 (Garage):
//! each test spawns the application on port 0 in its own world (database,
//! bucket, queue and key prefixes), so tests run in parallel.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use shared::configuration::{ByteSize, Env};
use shared::server::HttpSettings;
use shared::testing::World;
use shared::watch::WatchSettings;
use tokio::io::AsyncWriteExt;
use upload_http2::configuration::{Settings, UploadSettings};
use upload_http2::startup;

struct TestApp {
    base: String,
    port: u16,
    world: World,
    client: reqwest::Client,
    key: shared::auth::ApiKey,
}

async fn spawn_app(max_bytes: ByteSize) -> TestApp {
    let mut upload = UploadSettings::from_env(&mut Env::listing());
    upload.max_bytes = max_bytes;
    spawn_app_with(upload).await
}

async fn spawn_app_with(upload: UploadSettings) -> TestApp {
    spawn_app_watching(upload, WatchSettings::from_env(&mut Env::listing())).await
}

async fn spawn_app_watching(upload: UploadSettings, events: WatchSettings) -> TestApp {
    let world = World::new().await;
    let settings = Settings {
        http: HttpSettings { addr: "127.0.0.1:0".into(), shutdown_grace: shared::configuration::Seconds(Duration::from_secs(1)) },
        telemetry: Default::default(),
        backends: world.backends.clone(),
        upload,
        events,
        // No rate limits here (tests/ratelimit.rs has its own).
        rate_limits: Default::default(),
        auth: Default::default(),
        bootstrap: Default::default(),
    };
    let app = startup::build(settings).await.expect("app builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    // A creator's key on every request, as a real client sends it.
    let (key, _) = world.api_key(shared::auth::Role::Creator).await;
    let client = reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).build().unwrap();
    TestApp { base: format!("http://127.0.0.1:{port}"), port, world, client, key }
}

impl TestApp {
    async fn post_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client.post(format!("{}/api/v1/videos?title=raw", self.base)).header("content-type", content_type).body(body).send().await.unwrap()
    }

    async fn get_video(&self, id: &str) -> reqwest::Response {
        self.client.get(format!("{}/api/v1/videos/{id}", self.base)).send().await.unwrap()
    }

    async fn video_rows(&self) -> i64 {
        let pool = self.world.backends.database.pool().unwrap();
        sqlx::query_scalar("SELECT count(*) FROM videos").fetch_one(&pool).await.unwrap()
    }

    async fn open_multipart_uploads(&self) -> usize {
        self.world.backends.s3.store().open_multipart_uploads("sources/").await.unwrap().len()
    }

    /// Takes the next job off this world's queue.
    async fn take_job(&self) -> lapin::message::BasicGetMessage {
        let conn = self.world.backends.queue.connect().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.basic_get(&self.world.backends.queue.names().jobs_queue, lapin::options::BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a job message")
    }

    /// Waits (bounded) for a condition that background clean-up makes true.
    async fn eventually(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E3779B97F4A7C15;
    (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect()
}

async fn assert_problem(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn a_raw_upload_is_stored_byte_for_byte_and_its_job_is_queued() {
    let app = spawn_app(ByteSize(64 << 20)).await;
    let bytes = pseudo_random(19 << 20); // three parts of 8 MiB: exercises the part pipeline
    let res = app.post_raw("video/mp4", bytes.clone()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/videos/{id}"));
    assert_eq!(created["status"], "queued");
    assert_eq!(created["title"], "raw");

    let video: Value = app.get_video(id).await.json().await.unwrap();
    assert_eq!(video["size"].as_u64().unwrap(), bytes.len() as u64);
    assert_eq!(video["sha256"], sha256_hex(&bytes));

    let stored = app.world.backends.s3.store().get(&format!("sources/{id}")).await.unwrap().unwrap();
    let stored = stored.body.collect().await.unwrap().into_bytes();
    assert_eq!(sha256_hex(&stored), sha256_hex(&bytes), "S3 object differs from the upload");

    // The job is on the queue, persistent, naming this video.
    let msg = app.take_job().await;
    let job = shared::queue::TranscodeJob::decode(&msg.delivery.data).unwrap();
    assert_eq!(job.video_id.to_string(), id);
    assert_eq!(msg.delivery.properties.delivery_mode(), &Some(2));
}

#[tokio::test]
async fn a_multipart_form_carries_the_file_title_and_description() {
    let app = spawn_app(ByteSize(64 << 20)).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(pseudo_random(1 << 20)).file_name("cat.mp4").mime_str("video/mp4").unwrap())
        .text("title", "A cat")
        .text("description", "It sits.");
    let res = app.client.post(format!("{}/api/v1/videos", app.base)).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = res.json().await.unwrap();
    assert_eq!((v["title"].as_str(), v["description"].as_str(), v["size"].as_u64()), (Some("A cat"), Some("It sits."), Some(1 << 20)));
}

#[tokio::test]
async fn bad_uploads_get_problem_json_and_leave_nothing_behind() {
    let app = spawn_app(ByteSize(64 << 20)).await;
    assert_problem(app.post_raw("video/mp4", Vec::<u8>::new()).await, StatusCode::BAD_REQUEST, "empty-body").await;
    assert_problem(app.post_raw("text/plain", "hello").await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;
    let no_file = reqwest::multipart::Form::new().text("title", "nothing");
    let res = app.client.post(format!("{}/api/v1/videos", app.base)).multipart(no_file).send().await.unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid-multipart").await;
    let bad_title = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(vec![1u8; 1000]).mime_str("video/mp4").unwrap())
        .text("title", "x".repeat(300));
    let res = app.client.post(format!("{}/api/v1/videos", app.base)).multipart(bad_title).send().await.unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid-field").await;

    assert_eq!(app.video_rows().await, 0);
    assert_eq!(app.open_multipart_uploads().await, 0);
    app.eventually("refused file deleted", async || app.world.backends.s3.store().list_keys("sources/").await.unwrap().is_empty()).await;
}

#[tokio::test]
async fn an_announced_oversize_body_is_refused_before_a_byte_is_read() {
    let app = spawn_app(ByteSize(6 << 20)).await;
    // Content-Length says 10 GiB; no body follows. The answer must not wait for it.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(format!("POST /api/v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: video/mp4\r\nContent-Length: 10737418240\r\n\r\n", app.key.expose()).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut s, &mut buf)).await.expect("answered at once").unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert_eq!(app.open_multipart_uploads().await, 0);
}

#[tokio::test]
async fn a_body_that_grows_past_the_limit_is_cut_off_and_its_multipart_upload_aborted() {
    let app = spawn_app(ByteSize(6 << 20)).await;
    // Chunked, no Content-Length: the limit can only be enforced mid-stream.
    let chunks = futures::stream::iter((0..12).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1 << 20])));
    let res = app.post_raw("video/mp4", reqwest::Body::wrap_stream(chunks)).await;
    let body = assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "upload-too-large").await;
    assert_eq!(body["max_bytes"], 6 << 20);
    assert_eq!(app.open_multipart_uploads().await, 0, "multipart upload left open");
    assert_eq!(app.video_rows().await, 0);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_upload_and_no_row() {
    let app = spawn_app(ByteSize(1 << 30)).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(format!("POST /api/v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: video/mp4\r\nContent-Length: 104857600\r\n\r\n", app.key.expose()).as_bytes()).await.unwrap();
    // Enough for the first 8 MiB part to be under way in S3.
    for _ in 0..12 {
        s.write_all(&vec![1u8; 1 << 20]).await.unwrap();
    }
    app.eventually("multipart upload started", async || app.open_multipart_uploads().await == 1).await;
    drop(s);
    app.eventually("multipart upload aborted", async || app.open_multipart_uploads().await == 0).await;
    assert_eq!(app.video_rows().await, 0);
    assert!(app.world.backends.s3.store().list_keys("sources/").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_list_is_newest_first_and_paginates_with_a_cursor() {
    let app = spawn_app(ByteSize(1 << 20)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v: Value = app.post_raw("video/mp4", vec![1u8; 100]).await.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let page: Value = app.client.get(format!("{}/api/v1/videos?limit=2", app.base)).send().await.unwrap().json().await.unwrap();
    let got: Vec<&str> = page["items"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let next = page["next"].as_str().expect("a next page");
    let page: Value = app.client.get(format!("{}{next}", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"][0]["id"], ids[0]);
    assert!(page["next"].is_null());
}

#[tokio::test]
async fn malformed_ids_queries_and_unknown_videos_get_problem_json() {
    let app = spawn_app(ByteSize(1 << 20)).await;
    assert_problem(app.get_video("not-a-uuid").await, StatusCode::BAD_REQUEST, "invalid-video-id").await;
    assert_problem(app.get_video("0190c6e2-1f6a-7c3e-9d1e-3b8f0a6b5c21").await, StatusCode::NOT_FOUND, "video-not-found").await;
    for q in ["limit=0", "limit=1000", "limit=abc", "before=xyz"] {
        let res = app.client.get(format!("{}/api/v1/videos?{q}", app.base)).send().await.unwrap();
        assert_problem(res, StatusCode::BAD_REQUEST, "invalid-query").await;
    }
    let res = app.client.get(format!("{}/no/such/route", app.base)).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let app = spawn_app(ByteSize(1 << 20)).await;
    assert_eq!(app.client.get(format!("{}/health/live", app.base)).send().await.unwrap().status(), StatusCode::OK);
    let ready: Value = app.client.get(format!("{}/health/ready", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checked"], serde_json::json!(["postgres", "rabbitmq", "s3", "redis"]));
    app.post_raw("text/plain", "x").await;
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("uploads_total{outcome=\"unsupported-media-type\",service=\"upload-http2\"} 1"), "{metrics}");
}

#[tokio::test]
async fn an_upload_whose_publish_failed_is_republished_and_queued() {
    let mut upload = UploadSettings::from_env(&mut Env::listing());
    upload.republish_every = shared::configuration::Seconds(Duration::from_millis(500));
    let app = spawn_app_with(upload).await;
    // What a failed publish leaves behind: a stored source and a row stuck in `uploaded`.
    let videos = shared::videos::Videos::new(app.world.backends.database.pool().unwrap());
    let id = uuid::Uuid::now_v7();
    let stored = shared::storage::Stored { key: format!("sources/{id}"), size: 3, sha256: "0".repeat(64) };
    let new = shared::videos::NewVideo { id, owner_id: Some(uuid::Uuid::now_v7()), visibility: Default::default(), title: "t".into(), description: String::new(), content_type: "video/mp4".into(), stored };
    videos.insert_uploaded(&new).await.unwrap();
    app.eventually("row re-enqueued", async || videos.get(id).await.unwrap().unwrap().status == "queued").await;
    let msg = app.take_job().await;
    assert_eq!(shared::queue::TranscodeJob::decode(&msg.delivery.data).unwrap().video_id, id);
}

#[tokio::test]
async fn delete_removes_the_row_the_source_and_every_transcode_object() {
    let app = spawn_app(ByteSize(64 << 20)).await;
    let res = app.post_raw("video/mp4", pseudo_random(1 << 20)).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let storage = app.world.backends.s3.store();
    // Objects two attempts stored (a worker's job; the worker tests cover that side).
    for key in [format!("hls/{id}/a1/master.m3u8"), format!("hls/{id}/a2/240p/seg_00000.m4s")] {
        storage.put_bytes(&key, "x".into(), "text/plain").await.unwrap();
    }
    let res = app.client.delete(format!("{}/api/v1/videos/{id}", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get_video(&id).await, StatusCode::NOT_FOUND, "video-not-found").await;
    assert!(storage.list_keys(&format!("hls/{id}/")).await.unwrap().is_empty());
    assert!(storage.get(&format!("sources/{id}")).await.unwrap().is_none());
    assert_eq!(app.video_rows().await, 0);
    let again = app.client.delete(format!("{}/api/v1/videos/{id}", app.base)).send().await.unwrap();
    assert_problem(again, StatusCode::NOT_FOUND, "video-not-found").await;
}

#[tokio::test]
async fn events_stream_status_changes_and_progress_until_ready() {
    let app = spawn_app(ByteSize(64 << 20)).await;
    let res = app.post_raw("video/mp4", pseudo_random(1 << 20)).await;
    let id: uuid::Uuid = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let pool = app.world.backends.database.pool().unwrap();
    let cache = app.world.backends.redis.cache().unwrap();
    let mut events = app.client.get(format!("{}/api/v1/videos/{id}/events", app.base)).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    // What a worker writes as it goes (the worker tests drive the real thing).
    let mut seen = String::new();
    let mut step = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), events.chunk()).await.expect("stream ends in time") {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if step == 0 && seen.contains("\"status\":\"queued\"") {
            sqlx::query("UPDATE videos SET status = 'processing' WHERE id = $1").bind(id).execute(&pool).await.unwrap();
            let p = shared::cache::Progress { stage: "transcoding".into(), percent: 42.5, fps: Some(120.0), speed: Some(4.1) };
            cache.set_progress(id, &p).await.unwrap();
            step = 1;
        } else if step == 1 && seen.contains("event: progress") {
            sqlx::query("UPDATE videos SET status = 'ready' WHERE id = $1").bind(id).execute(&pool).await.unwrap();
            step = 2;
        }
    }
    let order: Vec<&str> = seen.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(order, ["status", "status", "progress", "status"], "{seen}");
    assert!(seen.contains("\"percent\":42.5") && seen.contains("\"fps\":120.0") && seen.contains("\"speed\":4.1"), "{seen}");
    assert!(seen.contains("\"status\":\"ready\""));

    let missing = app.client.get(format!("{}/api/v1/videos/{}/events", app.base, uuid::Uuid::now_v7())).send().await.unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND, "video-not-found").await;
}

/// The Prometheus value of an unlabelled series (besides `service`) at `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split(['{', ' ']).next() == Some(name)).unwrap_or_else(|| panic!("no {name} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Issue 11: an event stream per viewer must not cost a database poller per
/// viewer. 5,000 subscribers over 50 HTTP/2 connections (100 streams each,
/// under hyper's 200) share one watcher, and every one receives `ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_subscribers_share_one_watcher_and_all_see_ready() {
    const SUBSCRIBERS: usize = 5000;
    const CONNECTIONS: usize = 50;
    let app = spawn_app(ByteSize(64 << 20)).await;
    let res = app.post_raw("video/mp4", pseudo_random(64 << 10)).await;
    let id: uuid::Uuid = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let url = format!("{}/api/v1/videos/{id}/events", app.base);
    let clients: Vec<reqwest::Client> = (0..CONNECTIONS).map(|_| reqwest::Client::builder().http2_prior_knowledge().build().unwrap()).collect();

    let mut subscribers = tokio::task::JoinSet::new();
    for i in 0..SUBSCRIBERS {
        let (client, url) = (clients[i % CONNECTIONS].clone(), url.clone());
        subscribers.spawn(async move {
            let mut res = client.get(&url).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let mut seen = String::new();
            while let Some(chunk) = res.chunk().await.unwrap() {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            seen
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(&app, "sse_subscribers").await < SUBSCRIBERS as f64 {
        assert!(Instant::now() < deadline, "only {} subscribers connected", metric(&app, "sse_subscribers").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&app, "sse_watchers").await, 1.0, "one watcher for one video");
    // One watcher polls twice a second; one per subscriber would poll 20,000 times in 2 s.
    let before = metric(&app, "sse_watcher_polls_total").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = metric(&app, "sse_watcher_polls_total").await - before;
    assert!(polls <= 8.0, "{polls} polls in 2 s");

    let pool = app.world.backends.database.pool().unwrap();
    sqlx::query("UPDATE videos SET status = 'ready' WHERE id = $1").bind(id).execute(&pool).await.unwrap();
    let all = tokio::time::timeout(Duration::from_secs(60), subscribers.join_all()).await.expect("every stream ends after ready");
    assert_eq!(all.len(), SUBSCRIBERS);
    for seen in &all {
        let order: Vec<&str> = seen.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(order, ["status", "status"], "{seen}");
        assert!(seen.contains("\"status\":\"queued\"") && seen.contains("\"status\":\"ready\""), "{seen}");
    }
    app.eventually("the subscribers and the watcher to be gone", async || {
        metric(&app, "sse_subscribers").await == 0.0 && metric(&app, "sse_watchers").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn subscribers_beyond_the_cap_get_503_problem_with_retry_after() {
    let mut events = WatchSettings::from_env(&mut Env::listing());
    events.max_subscribers = 2;
    let app = spawn_app_watching(UploadSettings::from_env(&mut Env::listing()), events).await;
    let res = app.post_raw("video/mp4", pseudo_random(64 << 10)).await;
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let url = format!("{}/api/v1/videos/{id}/events", app.base);
    // HTTP/2, so that dropping a response resets its stream at once.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let first = h2.get(&url).send().await.unwrap();
    let second = h2.get(&url).send().await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = h2.get(&url).send().await.unwrap();
    assert_eq!(third.headers()["retry-after"], "5");
    let body = assert_problem(third, StatusCode::SERVICE_UNAVAILABLE, "too-many-subscribers").await;
    assert_eq!(body["max_subscribers"], 2);
    assert_eq!(metric(&app, "sse_subscribers_refused_total").await, 1.0);
    drop(first);
    app.eventually("a slot to free", async || h2.get(&url).send().await.unwrap().status() == StatusCode::OK).await;
}
