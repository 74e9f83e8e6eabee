//! Upload creation is rate-limited per client: above RATE_LIMIT_UPLOADS a
//! POST gets 429 problem+json with Retry-After before its body is read, and
//! stores nothing. The test process is on loopback, a trusted proxy by
//! default, so the client names itself in X-Forwarded-For as a front door
//! would.


use reqwest::StatusCode;
use serde_json::Value;
use shared::testing::World;
use upload_http2::configuration::Settings;
use upload_http2::startup;

#[tokio::test]
async fn creations_above_the_rate_get_429_and_store_nothing() {
    let world = World::new().await;
    let mut env = world.env_with(&[("RATE_LIMIT_UPLOADS", "1/m burst=2")]);
    let settings = Settings::from_env(&mut env);
    env.finish().expect("test settings");
    let app = startup::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (key, _) = world.api_key(shared::auth::Role::Creator).await;
    let client = reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).build().unwrap();
    let post = |who: &'static str| client.post(format!("{base}/api/v1/videos?title=t")).header("x-forwarded-for", who).header("content-type", "video/mp4").body(vec![0u8; 1024]);

    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(post("198.51.100.40").send().await.unwrap());
    }
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    assert!(statuses[..2].iter().all(|s| *s != StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(statuses[2..], [StatusCode::TOO_MANY_REQUESTS; 2], "{statuses:?}");
    let refused = answers.pop().unwrap();
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate-limited");

    let pool = world.backends.database.pool().unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM videos").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 2, "only the two uploads let through were stored");
    // Another client, listing, and the platform itself are not held back.
    assert_ne!(post("198.51.100.41").send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(client.get(format!("{base}/api/v1/videos")).header("x-forwarded-for", "198.51.100.40").send().await.unwrap().status(), StatusCode::OK);
    let own = client.post(format!("{base}/api/v1/videos?title=t")).header("content-type", "video/mp4").body(vec![0u8; 1024]).send().await.unwrap();
    assert_ne!(own.status(), StatusCode::TOO_MANY_REQUESTS);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("rate_limit_refusals_total{") && l.contains("route=\"uploads\"") && l.ends_with(" 2")), "{metrics}");
}
