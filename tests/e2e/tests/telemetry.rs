//! Spans leave the process over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is
//! set: a real service binary, a local receiver that records what it is sent.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::post;
use e2e::{binary, free_port};

#[tokio::test]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_set() {
    let _panics = e2e::PanicWatch::start();
    // The receiver: records (path, content type, body size) of every POST.
    let seen: Arc<Mutex<Vec<(String, String, usize)>>> = Arc::default();
    let record = seen.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                record.lock().unwrap().push(("/v1/traces".into(), ct, body.len()));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let port = free_port();
    let mut edge = Command::new(binary("cdn-edge"))
        .env_clear()
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("ORIGIN_URL", "http://127.0.0.1:9") // nothing listens: requests fail fast, spans still close
        .env("REDIS_URL", std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
        .env("REDIS_PREFIX", format!("telemetry-{port}"))
        .env("PURGE_TOKEN", "telemetry-test-purge-token")
        // The machine's Redis URL is the example one, accepted only in dev.
        .env("PLATFORM_ENV", "dev")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    e2e::wait_ready(&format!("{base}/health/live"), Duration::from_secs(20)).await.expect("cdn-edge did not start");
    for _ in 0..3 {
        let res = client.get(format!("{base}/hls/00000000-0000-0000-0000-000000000000/master.m3u8")).send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::BAD_GATEWAY);
    }

    // SIGTERM: graceful shutdown flushes the span batch.
    assert!(Command::new("kill").args(["-TERM", &edge.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = edge.try_wait().unwrap() {
            assert!(status.success(), "cdn-edge exited with {status} after SIGTERM");
            break;
        }
        assert!(Instant::now() < deadline, "cdn-edge did not stop within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "no spans reached the OTLP endpoint");
    assert!(seen.iter().all(|(_, ct, len)| ct == "application/x-protobuf" && *len > 0), "{seen:?}");
}
