//! Slow, endless and too many uploads against the real services: each is
//! refused with problem+json and leaves no object, multipart upload or row.

use std::time::Duration;

use shared::configuration::Seconds;
use shared::rawhttp::{labelled_metric, Answer, RawRequest};
use shared::storage::Storage;
use shared::testing::World;
use upload_http2::configuration::{Settings, UploadSettings};
use upload_http2::startup;

struct App {
    port: u16,
    base: String,
    world: World,
    key: shared::auth::ApiKey,
}

/// The app in a fresh world, configured as from its environment, then `tune`d.
async fn spawn(tune: impl FnOnce(&mut UploadSettings)) -> App {
    let world = World::new().await;
    let mut env = world.env_with(&[]);
    let mut settings = Settings::from_env(&mut env);
    env.finish().expect("test settings");
    tune(&mut settings.upload);
    let app = startup::build(settings).await.expect("app builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (key, _) = world.api_key(shared::auth::Role::Creator).await;
    App { port, base: format!("http://127.0.0.1:{port}"), world, key }
}

impl App {
    async fn post(&self, content_type: &str, length: usize) -> RawRequest {
        let head = format!("POST /api/v1/videos?title=t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n", self.key.expose());
        RawRequest::open(self.port, &head).await
    }

    fn storage(&self) -> Storage {
        self.world.backends.s3.store()
    }

    async fn videos(&self) -> i64 {
        let pool = self.world.backends.database.pool().unwrap();
        sqlx::query_scalar("SELECT count(*) FROM videos").fetch_one(&pool).await.unwrap()
    }

    async fn gauge(&self, name: &str, label: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap();
        labelled_metric(&text, name, label)
    }

    /// Nothing of a refused upload is left: no row, object or open multipart upload.
    async fn assert_nothing_stored(&self) {
        assert_eq!(self.videos().await, 0);
        let storage = self.storage();
        shared::testing::eventually(Duration::from_secs(15), "the multipart upload is aborted", || {
            let storage = storage.clone();
            async move { storage.open_multipart_uploads("").await.unwrap().is_empty() }
        })
        .await;
        assert!(storage.list_keys("sources/").await.unwrap().is_empty());
    }
}

fn at_least_1000_bytes_a_second(u: &mut UploadSettings) {
    u.pace.min_bytes_per_sec = 1000;
    u.pace.window = Seconds(Duration::from_secs(1));
}

fn assert_problem(a: &Answer, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(a.status, status, "{}{}", a.head, a.body);
    assert_eq!(a.header("content-type").as_deref(), Some("application/problem+json"));
    let p = a.json();
    assert_eq!(p["code"], code, "{p}");
    p
}

#[tokio::test]
async fn an_upload_below_the_minimum_rate_gets_408_and_leaves_nothing() {
    let app = spawn(at_least_1000_bytes_a_second).await;
    let mut req = app.post("video/mp4", 100_000).await;
    req.send(&[7; 500]).await;
    let answer = req.answer().await;
    let p = assert_problem(&answer, 408, "upload-too-slow");
    assert!(p["detail"].as_str().unwrap().contains("1000 bytes/s"), "{p}");
    app.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_form_trickling_its_fields_is_cut_off_before_any_file_part() {
    let app = spawn(at_least_1000_bytes_a_second).await;
    let mut req = app.post("multipart/form-data; boundary=XX", 100_000).await;
    req.send(b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nA ti").await;
    let answer = req.answer().await;
    assert_problem(&answer, 408, "upload-too-slow");
    app.assert_nothing_stored().await;
}

#[tokio::test]
async fn an_upload_past_its_deadline_gets_408_and_leaves_nothing() {
    let app = spawn(|u| u.pace.deadline = Seconds(Duration::from_secs(2))).await;
    let mut req = app.post("video/mp4", 100_000).await;
    // Steady, but 100 bytes every 200 ms would take 200 s.
    for _ in 0..50 {
        if !req.send(&[7; 100]).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = req.answer().await;
    assert_problem(&answer, 408, "upload-deadline");
    app.assert_nothing_stored().await;
}

#[tokio::test]
async fn with_a_budget_of_two_uploads_the_third_gets_503_with_retry_after_and_the_gauge_returns_to_zero() {
    let app = spawn(|u| u.budget.max_uploads = 2).await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut req = app.post("video/mp4", 1000).await;
        req.send(&[1; 10]).await;
        slow.push(req);
    }
    shared::testing::eventually(Duration::from_secs(10), "both slow uploads are admitted", || async {
        app.gauge("upload_budget_in_use", "resource=\"uploads\"").await == 2.0
    })
    .await;

    let mut third = app.post("video/mp4", 1000).await;
    third.send(&[3; 1000]).await;
    let answer = third.answer().await;
    assert_eq!(answer.header("retry-after").as_deref(), Some("5"));
    let p = assert_problem(&answer, 503, "upload-capacity-exhausted");
    assert_eq!(p["resource"], "uploads");
    assert_eq!(app.gauge("upload_budget_refusals_total", "resource=\"uploads\"").await, 1.0);

    for mut req in slow {
        req.send(&[2; 990]).await;
        assert_eq!(req.answer().await.status, 201);
    }
    shared::testing::eventually(Duration::from_secs(10), "the budget is given back", || async {
        app.gauge("upload_budget_in_use", "resource=\"uploads\"").await == 0.0 && app.gauge("upload_budget_in_use", "resource=\"bytes\"").await == 0.0
    })
    .await;
    let mut again = app.post("video/mp4", 1000).await;
    again.send(&[3; 1000]).await;
    assert_eq!(again.answer().await.status, 201);
    assert_eq!(app.videos().await, 3);
}
