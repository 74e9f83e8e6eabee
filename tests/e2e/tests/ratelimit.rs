//! The front doors' per-client limits and path rules (issue 11), on this
//! checkout's NGINX and HAProxy configurations (`e2e::front_door`) in front
//! of the stack's services and edges:
//!
//! - a burst above a limit gets 429 problem+json with Retry-After, at NGINX
//!   and at HAProxy, for the API and (stricter) for upload creation, while
//!   the platform itself (loopback, no X-Forwarded-For) is not limited;
//! - `/hls/../metrics` sent as is, and its percent-encoded forms, get 400
//!   problem+json at both instead of reaching an edge.
//!
//! Whether the services behind are up does not matter here: a request the
//! front door lets through is anything but its own 429 or 400.
//!
//! Loopback is a trusted proxy in the native stack, so each simulated
//! client names itself in X-Forwarded-For: a fresh benchmarking-range
//! address per run (198.18.0.0/15, RFC 2544), never shared with another test.

use std::time::Duration;

use e2e::front_door::FrontDoors;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STACK_EDGES: [&str; 2] = ["127.0.0.1:8011", "127.0.0.1:8012"];

fn fresh_client_addr() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("198.{}.{}.{}", 18 + (n & 1), (n >> 8) as u8, (n >> 16) as u8)
}

/// `n` requests, `parallel` at a time, as client `who`: every status, and one 429 if any.
async fn burst(n: usize, parallel: usize, who: &str, request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder) -> (Vec<StatusCode>, Option<reqwest::Response>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let answers: Vec<reqwest::Response> = futures::stream::iter((0..n).map(|_| request(&client).header("x-forwarded-for", who).send()))
        .buffer_unordered(parallel)
        .map(|r| r.expect("the front door answers"))
        .collect()
        .await;
    let statuses = answers.iter().map(|r| r.status()).collect();
    (statuses, answers.into_iter().find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS))
}

async fn assert_problem_429(r: reqwest::Response, door: &str) {
    assert_eq!(r.headers()["content-type"], "application/problem+json", "{door}");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap_or_else(|_| panic!("{door}: Retry-After {:?}", r.headers()["retry-after"]));
    assert!(wait >= 1, "{door}: Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["status"].as_u64(), body["code"].as_str()), (Some(429), Some("rate-limited")), "{door}: {body}");
}

#[tokio::test]
async fn a_burst_above_the_rate_gets_429_problem_json_with_retry_after_at_both_front_doors() {
    let _panics = e2e::PanicWatch::start();
    let doors = FrontDoors::start(STACK_EDGES).await.expect("front doors start");
    for (door, base) in [("nginx", doors.nginx.clone()), ("haproxy", doors.haproxy.clone())] {
        let api = format!("{base}/api/v1/videos?limit=1");
        let (statuses, refused) = burst(300, 32, &fresh_client_addr(), |c| c.get(&api)).await;
        let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        let passed = statuses.len() - limited;
        println!("{door}: 300 API requests from one client at once: {passed} let through, {limited} refused with 429");
        assert!(passed >= 20, "{door}: the burst allowance must pass first ({passed} passed): {statuses:?}");
        assert_problem_429(refused.unwrap_or_else(|| panic!("{door}: no 429 in 300 requests: {statuses:?}")), door).await;
        let own = reqwest::get(&api).await.unwrap();
        assert_ne!(own.status(), StatusCode::TOO_MANY_REQUESTS, "{door}: the platform itself (no forwarded client) is not limited");

        // Upload creation has a stricter limit of its own: sequential
        // creations (bodiless, so the service refuses them without storing
        // anything) are cut off after about ten.
        let create = format!("{base}/api/v1/uploads");
        let who = fresh_client_addr();
        let mut passed = 0;
        let mut refused = None;
        for _ in 0..30 {
            let r = reqwest::Client::new().post(&create).header("x-forwarded-for", &who).send().await.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                refused.get_or_insert(r);
            } else {
                passed += 1;
            }
        }
        println!("{door}: 30 upload creations from one client: {passed} reached the service");
        assert!((1..=15).contains(&passed), "{door}: {passed} of 30 creations passed");
        assert_problem_429(refused.expect("creations refused"), door).await;
    }
}

/// One request written as is (no client library normalises it): the status and content type.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.expect("answered within 10 s").unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{base}{path}: not HTTP: {text}"));
    let content_type = text.lines().take_while(|l| !l.is_empty()).find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned())).unwrap_or_default();
    (status, content_type)
}

#[tokio::test]
async fn dot_segments_and_encoded_slashes_get_400_problem_json_at_both_front_doors() {
    let _panics = e2e::PanicWatch::start();
    let doors = FrontDoors::start(STACK_EDGES).await.expect("front doors start");
    let video = uuid::Uuid::new_v4();
    for (door, base) in [("nginx", &doors.nginx), ("haproxy", &doors.haproxy)] {
        for path in ["/hls/../metrics", "/hls/%2e%2e/metrics", "/hls/%2E./metrics", &format!("/hls/{video}/%2e%2e/%2e%2e/metrics"), "/hls/./x.m4s", "/hls/a%2fb.m4s", "/hls/a%5Cb.m4s", "/hls/a\\b.m4s"] {
            let (status, content_type) = raw_get(base, path).await;
            assert_eq!((status, content_type.as_str()), (400, "application/problem+json"), "{door} {path}");
        }
        // A path in normal form goes through, and a query may hold encoded slashes.
        let (status, _) = raw_get(base, &format!("/hls/{video}/master.m3u8?title=a%2Fb")).await;
        assert_ne!(status, 400, "{door}: a path in normal form is let through");
    }
}
