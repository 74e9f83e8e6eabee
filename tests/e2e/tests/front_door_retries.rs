//! Retries do not amplify failures (issue 19): a front door tries another
//! edge only when the edge itself failed (refused or dropped connection,
//! timeout, an answer that is not HTTP), never because a healthy edge
//! relayed a 5xx about its origin — that retry doubles the load on an
//! origin that is already failing, and with NGINX's `max_fails=1` it also
//! took every edge out of rotation at once.
//!
//! The real front-door configurations (`e2e::front_door`) run in front of
//! two real edges this test starts, whose origin is a loopback fixture that
//! answers 502, 503 or 504, or drops the connection (the edge then answers
//! its own 502), depending on the path. Each bad object is requested once
//! through each front door; the edges' `edge_requests_total` and the
//! fixture's own count must each rise by exactly one. The other half of the
//! rule is checked too: with one edge stopped, a request hashed to it is
//! still answered 200 by the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::front_door::FrontDoors;
use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback origin whose answer is chosen by the path: `/status-NNN/`
/// answers NNN, `/drop/` closes the connection unanswered, anything else
/// is a cacheable 200. Counts every request it reads.
async fn fixture_origin() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(answer(sock, count.clone()));
        }
    });
    (addr, hits)
}

async fn answer(mut sock: tokio::net::TcpStream, hits: Arc<AtomicUsize>) {
    // One request per connection, its head at most 16 KiB, within 5 s.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && head.len() < 16 << 10 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, extra) = if path.contains("/drop/") {
        return;
    } else if let Some(code) = path.split('/').find_map(|s| s.strip_prefix("status-")) {
        (code.to_owned(), "")
    } else {
        ("200".to_owned(), "cache-control: max-age=60\r\n")
    };
    let body = format!("fixture {status}\n");
    let reply = format!("HTTP/1.1 {status} Fixture\r\ncontent-type: video/iso.segment\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}", body.len());
    let _ = sock.write_all(reply.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// An edge of this test's own: the stack's edge settings, this fixture as
/// its origin, a disk tier and a Redis prefix of its own.
fn spawn_edge(name: &str, port: u16, origin: &str, disk: &std::path::Path) -> Process {
    let overrides = [
        ("HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("ORIGIN_URL", origin.to_owned()),
        ("EDGE_DISK_DIR", disk.join(name).display().to_string()),
        ("EDGE_NODE", format!("retries-{name}")),
        ("REDIS_PREFIX", format!("retries-{port}")),
        ("RUST_LOG", "warn".into()),
    ];
    spawn_stack_service("cdn-edge-1", "cdn-edge", &overrides)
}

/// Requests each edge has counted so far.
async fn edge_requests(edges: &[String; 2]) -> [f64; 2] {
    let mut out = [0.0; 2];
    for (i, edge) in edges.iter().enumerate() {
        out[i] = scrape(edge, "edge_requests_total").await.unwrap();
    }
    out
}

#[tokio::test]
async fn a_bad_answer_from_a_healthy_edge_reaches_the_edges_once_and_a_stopped_edge_is_still_retried() {
    let _panics = PanicWatch::start();
    let (origin, origin_hits) = fixture_origin().await;
    let disk = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let mut edge_a = Some(spawn_edge("a", ports[0], &origin, disk.path()));
    let _edge_b = spawn_edge("b", ports[1], &origin, disk.path());
    let edges = ports.map(|p| format!("http://127.0.0.1:{p}"));
    for edge in &edges {
        wait_ready(&format!("{edge}/health/ready"), Duration::from_secs(30)).await.expect("test edge ready");
    }
    let addrs = ports.map(|p| format!("127.0.0.1:{p}"));
    let doors = FrontDoors::start([&addrs[0], &addrs[1]]).await.unwrap();
    let run = uuid::Uuid::new_v4();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    // HAProxy routes once its first checks have passed.
    let probe = format!("{}/hls/{run}/ok/probe.m4s", doors.haproxy);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !client.get(&probe).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "haproxy does not route to the test edges\n{}", doors.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut wrong = Vec::new();
    for (door, front) in [("nginx", &doors.nginx), ("haproxy", &doors.haproxy)] {
        for (case, expected) in [("status-502", 502), ("status-503", 503), ("status-504", 504), ("drop", 502)] {
            let url = format!("{front}/hls/{run}/{door}/{case}/seg_00001.m4s");
            let (edges_before, origin_before) = (edge_requests(&edges).await, origin_hits.load(Ordering::SeqCst));
            let res = client.get(&url).send().await.unwrap();
            let (status, x_cache) = (res.status().as_u16(), res.headers().get("x-cache").map(|v| v.to_str().unwrap_or("?").to_owned()));
            let body = res.text().await.unwrap_or_default();
            let edges_after = edge_requests(&edges).await;
            let at_edges = edges_after[0] - edges_before[0] + edges_after[1] - edges_before[1];
            let at_origin = origin_hits.load(Ordering::SeqCst) - origin_before;
            eprintln!("{door} {case}: {status}, X-Cache {x_cache:?}, {at_edges} edge request(s), {at_origin} origin request(s)");
            // The answer must be the edge's own, relayed: not the proxy's
            // refusal after giving up on every edge.
            if status != expected || x_cache.is_none() || at_edges != 1.0 || at_origin != 1 {
                wrong.push(format!("{door} {case}: {status} (want {expected}), X-Cache {x_cache:?}, {at_edges} edge and {at_origin} origin requests (want 1 and 1): {body}"));
            }
        }
    }

    // A path each front door hashes to edge A, found while both edges run.
    let mut on_a = Vec::new();
    for (door, front) in [("nginx", &doors.nginx), ("haproxy", &doors.haproxy)] {
        let found = async {
            for i in 0..32 {
                let url = format!("{front}/hls/{run}/ok/{door}-{i}.m4s");
                let before = edge_requests(&edges).await;
                assert!(client.get(&url).send().await.unwrap().status().is_success(), "{url}");
                if edge_requests(&edges).await[0] > before[0] {
                    return url;
                }
            }
            panic!("no path of 32 hashed to edge A through {door}");
        };
        on_a.push((door, found.await));
    }
    drop(edge_a.take());
    for (door, url) in on_a {
        let res = client.get(&url).send().await.unwrap();
        if !res.status().is_success() {
            wrong.push(format!("{door}: with edge A stopped, {url} got {} instead of the other edge's answer", res.status()));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), doors.logs());
}
