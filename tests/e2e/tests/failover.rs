//! One edge stopped during playback costs viewers nothing: simulated
//! viewers fetch a real transcoded ladder through NGINX, then through
//! HAProxy, while one of the stack's edges is stopped (SIGTERM: in-flight
//! responses finish, new connections are refused) and started again.
//! Every viewer request must succeed, retried on the other edge by the
//! load balancer. Its own test binary: it disturbs the shared stack.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::*;

const VIEWERS: usize = 8;

async fn ladder_objects(client: &reqwest::Client, base: &str) -> Vec<String> {
    let master = client.get(format!("{base}/master.m3u8?pathway=primary")).send().await.unwrap().text().await.unwrap();
    let mut objects = Vec::new();
    for (uri, _) in variants(&master) {
        let rung = uri.split('/').next().unwrap().to_owned();
        let playlist = client.get(format!("{base}/{uri}")).send().await.unwrap().text().await.unwrap();
        objects.push(uri);
        objects.extend(media_objects(&playlist).into_iter().map(|o| format!("{rung}/{o}")));
    }
    // More distinct objects, so both edges of the hash ring hold some.
    objects.extend(["poster.jpg", "thumbnails.vtt", "manifest.mpd", "sprite_000.jpg", "360p/iframes.m3u8"].map(String::from));
    objects
}


fn pid_of(stack: &Stack, service: &str) -> i32 {
    std::fs::read_to_string(stack.stack_dir.join(format!("pids/{service}.pid"))).unwrap().trim().parse().unwrap()
}

fn start_missing_services() {
    let status = Command::new(repo().join("scripts/stack")).arg("up").env("STACK_NO_BUILD", "1").status().unwrap();
    assert!(status.success(), "scripts/stack up could not restart the stopped edge");
}

/// Viewers loop over the ladder for `secs`; `edge` is stopped after a
/// third of it. Returns (requests, failures with reasons).
async fn play_through_an_edge_stop(stack: &Stack, front: &str, edge: &str, objects: &[String], id: &str, secs: u64) -> (usize, Vec<String>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(secs);
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|v| {
            let (client, requests, failures) = (client.clone(), requests.clone(), failures.clone());
            let (objects, base) = (objects.to_vec(), format!("{front}/hls/{id}"));
            tokio::spawn(async move {
                let mut i = v;
                while Instant::now() < until {
                    let url = format!("{base}/{}", objects[i % objects.len()]);
                    i += 1;
                    requests.fetch_add(1, Ordering::Relaxed);
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            if let Err(e) = r.bytes().await {
                                failures.lock().unwrap().push(format!("{url}: body cut: {e}"));
                            }
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("{url}: {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("{url}: {e}")),
                    }
                }
            })
        })
        .collect();
    let addr = stack_env(edge).into_iter().find(|(k, _)| k == "HTTP_ADDR").expect("the edge has an HTTP_ADDR").1;
    let base = format!("http://{addr}");
    let served = || async { scrape(&base, "edge_requests_total").await.unwrap() };
    let before = served().await;
    tokio::time::sleep(Duration::from_secs(secs / 3)).await;
    // The edge about to stop must have been carrying viewers, or the test proves nothing.
    assert!(served().await > before, "{edge} served no viewer request through {front} before it was stopped");
    let pid = pid_of(stack, edge);
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success(), "SIGTERM to {edge}");
    for v in viewers {
        v.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    (requests.load(Ordering::Relaxed), failures)
}

#[tokio::test]
async fn an_edge_stopped_during_playback_behind_nginx_and_behind_haproxy_fails_no_viewer_request() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let id = ready_clip(&client, &stack.nginx_http, "failover", 12, 640, 360, Duration::from_secs(300)).await;
    let objects = ladder_objects(&client, &format!("{}/hls/{id}", stack.nginx_http)).await;
    assert!(objects.len() > 10, "{objects:?}");

    for (front, edge) in [(stack.nginx_http.clone(), "cdn-edge-1"), (stack.haproxy.clone(), "cdn-edge-2")] {
        let (requests, failures) = play_through_an_edge_stop(&stack, &front, edge, &objects, &id, 12).await;
        start_missing_services();
        println!("{front}: {requests} viewer requests, {edge} stopped a third of the way in, {} failed", failures.len());
        assert!(requests > 100, "too few requests to mean anything: {requests}");
        assert!(failures.is_empty(), "{front} with {edge} stopped: {} of {requests} failed: {:?}", failures.len(), &failures[..failures.len().min(10)]);
    }
}
