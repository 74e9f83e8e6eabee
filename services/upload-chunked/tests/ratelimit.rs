//! tus creation is rate-limited per client: above RATE_LIMIT_UPLOADS a
//! creation POST gets 429 problem+json with Retry-After (and Tus-Resumable,
//! like every tus answer) and creates nothing; the upload's other requests
//! (HEAD, PATCH, OPTIONS) are not creation and are not limited. The test
//! process is on loopback, a trusted proxy by default, so the client names
//! itself in X-Forwarded-For as a front door would.


use reqwest::StatusCode;
use serde_json::Value;
use shared::testing::World;
use upload_chunked::configuration::Settings;
use upload_chunked::startup;

#[tokio::test]
async fn creations_above_the_rate_get_429_and_create_nothing() {
    let world = World::new().await;
    let mut env = world.env_with(&[("RATE_LIMIT_UPLOADS", "1/m burst=2")]);
    let settings = Settings::from_env(&mut env);
    env.finish().expect("test settings");
    let app = startup::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (key, _) = world.api_key(shared::auth::Role::Creator).await;
    let client = reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).build().unwrap();
    let create = |who: &'static str| client.post(format!("{base}/api/v1/uploads")).header("x-forwarded-for", who).header("tus-resumable", "1.0.0").header("upload-length", "10");

    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(create("198.51.100.50").send().await.unwrap());
    }
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]);
    let location = answers[0].headers()["location"].to_str().unwrap().to_owned();
    let refused = answers.pop().unwrap();
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    assert_eq!(refused.headers()["tus-resumable"], "1.0.0");
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate-limited");

    let pool = world.backends.database.pool().unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 2, "only the two creations let through made uploads");
    // The same client may still work on its uploads: only creation is limited.
    let url = if location.starts_with("http") { location } else { format!("{base}{location}") };
    let head = client.head(&url).header("x-forwarded-for", "198.51.100.50").header("tus-resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let patch = client
        .patch(&url)
        .header("x-forwarded-for", "198.51.100.50")
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(vec![7u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::NO_CONTENT);
    let options = client.request(reqwest::Method::OPTIONS, format!("{base}/api/v1/uploads")).header("x-forwarded-for", "198.51.100.50").send().await.unwrap();
    assert_ne!(options.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client is not held back.
    assert_eq!(create("198.51.100.51").send().await.unwrap().status(), StatusCode::CREATED);
}
