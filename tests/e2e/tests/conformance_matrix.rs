//! The delivery conformance matrix through the front doors (issue 19): the
//! request shapes of `e2e::conformance` on every object kind of a video
//! transcoded now, cold and then hit, through NGINX (HTTP/1.1, h2c, h2 over
//! TLS) and HAProxy (HTTP/1.1, h2c), on the native stack.
//!
//! The edge states that need a server of the test's own (stale, coalesced,
//! pass) are the in-process matrix's (`services/cdn-edge/tests/matrix.rs`);
//! here the point is what the doors do to an answer: framing, HTTP/2,
//! TLS, and retries that could hide or multiply a failure.
//!
//! Each (door, shape) round starts cold: the video's folder is purged on
//! edge 1, which applies it at once and publishes it, and the round waits
//! until edge 2 has applied it too.

use std::time::{Duration, Instant};

use e2e::conformance::{self, Kind, Object, Policy, Row, State, SHAPES};
use e2e::*;
use reqwest::Version;
use shared::sessions::SessionId;

const READY_TIMEOUT: Duration = Duration::from_secs(300);

struct Door {
    name: &'static str,
    base: String,
    client: reqwest::Client,
    version: Version,
}

fn doors(stack: &Stack) -> Vec<Door> {
    let ca = std::fs::read(stack.stack_dir.join("tls/ca.crt")).expect("stack CA certificate (run scripts/setup)");
    let h1 = || conformance::raw_client().http1_only().build().unwrap();
    let h2c = || conformance::raw_client().http2_prior_knowledge().build().unwrap();
    let tls = conformance::raw_client().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    let h2c_nginx = std::env::var("E2E_NGINX_H2C").unwrap_or_else(|_| "http://127.0.0.1:8082".into());
    vec![
        Door { name: "nginx h1", base: stack.nginx_http.clone(), client: h1(), version: Version::HTTP_11 },
        Door { name: "nginx h2c", base: h2c_nginx, client: h2c(), version: Version::HTTP_2 },
        Door { name: "nginx h2+TLS", base: stack.nginx_https.clone(), client: tls, version: Version::HTTP_2 },
        Door { name: "haproxy h1", base: stack.haproxy.clone(), client: h1(), version: Version::HTTP_11 },
        Door { name: "haproxy h2c", base: stack.haproxy.clone(), client: h2c(), version: Version::HTTP_2 },
    ]
}

/// The Cache-Control the stack's origin sends: its configured value, or the
/// default documented in `.env.example`.
fn policy() -> Policy {
    let env = stack_env("streaming");
    let get = |k: &str, default: &str| env.iter().find(|(n, _)| n == k).map_or(default.to_owned(), |(_, v)| v.clone());
    Policy {
        text: get("CACHE_CONTROL_PLAYLIST", "public, max-age=3600, stale-while-revalidate=60, stale-if-error=86400"),
        media: get("CACHE_CONTROL_SEGMENT", "public, max-age=31536000, immutable, stale-if-error=86400"),
    }
}

fn addr(service: &str) -> String {
    let env = stack_env(service);
    let a = env.iter().find(|(k, _)| k == "HTTP_ADDR").map(|(_, v)| v.clone()).expect("HTTP_ADDR");
    format!("http://{a}")
}

/// Purges `prefix` on both edges: edge 1 at once, edge 2 through the
/// channel (waited for, so that no purge lands in the middle of a round).
async fn purge(http: &reqwest::Client, edges: &[String; 2], token: &str, prefix: &str) {
    let before = scrape(&edges[1], "edge_purges_total").await.expect("edge 2 metrics");
    let r = http.post(format!("{}/purge", edges[0])).bearer_auth(token).json(&serde_json::json!({ "prefix": prefix })).send().await.expect("purge");
    assert_eq!(r.status(), 202, "purge {prefix}: {}", r.text().await.unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape(&edges[1], "edge_purges_total").await.expect("edge 2 metrics") <= before {
        assert!(Instant::now() < deadline, "edge 2 did not apply the purge of {prefix} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 5 s) until each shared object answers from an edge's store
/// through `door`. Not fatal: an object a broken cold answer left unstored
/// shows as a failing hit row, which names it.
async fn stored(door: &Door, base: &str, objects: &[Object]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for o in objects.iter().filter(|o| !o.kind.per_viewer()) {
        while Instant::now() < deadline {
            let r = door.client.head(format!("{base}{}", o.name)).send().await;
            if r.is_ok_and(|r| r.headers().contains_key("age")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn round(door: &Door, base: &str, objects: &[Object], shape: &'static conformance::Shape, state: State, policy: &Policy, sid: &SessionId) -> Vec<String> {
    let all = objects.iter().map(|o| async move {
        let seen = conformance::send(conformance::request(&door.client, base, o, shape, sid)).await;
        let row = Row { kind: o.kind, state, shape, path: door.name };
        let mut bad = conformance::check(&row, o, policy, sid, &seen);
        if let Ok(s) = &seen {
            if s.version != door.version {
                bad.push(format!("{row}: answered over {:?}, expected {:?}", s.version, door.version));
            }
        }
        bad
    });
    futures::future::join_all(all).await.concat()
}

#[tokio::test]
async fn every_kind_answers_every_request_shape_cold_and_hit_through_every_front_door() {
    let stack = Stack::from_env();
    let setup = stack.client().unwrap();
    let id = ready_clip(&setup, &stack.nginx_http, "conformance-matrix", 4, 640, 360, READY_TIMEOUT).await;
    let master_key: String = sqlx::query_scalar("SELECT master_key FROM videos WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&database().await.unwrap())
        .await
        .expect("the ready video's master key");
    let prefix = shared::layout::served_prefix(&master_key).expect("served prefix");
    let storage = shared::storage::S3Settings::from_env(&mut shared::configuration::Env::from_process()).store();
    let objects = conformance::objects(&storage, prefix).await.expect("the video's objects in S3");
    let edges = [addr("cdn-edge-1"), addr("cdn-edge-2")];
    let token = stack_env("cdn-edge-1").into_iter().find(|(k, _)| k == "PURGE_TOKEN").expect("PURGE_TOKEN").1;
    let (policy, sid, folder) = (policy(), SessionId::new(), format!("/hls/{id}/"));

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut cases = 0;
    for door in doors(&stack) {
        let base = format!("{}{folder}", door.base);
        for shape in SHAPES.iter() {
            purge(&setup, &edges, &token, &folder).await;
            failures.extend(round(&door, &base, &objects, shape, State::Cold, &policy, &sid).await);
            stored(&door, &base, &objects).await;
            failures.extend(round(&door, &base, &objects, shape, State::Hit, &policy, &sid).await);
            cases += 2 * objects.len();
        }
    }
    eprintln!("{cases} cases through the front doors in {:?}, {} mismatches", started.elapsed(), failures.len());
    assert_eq!(objects.iter().map(|o| o.kind).collect::<Vec<_>>(), Kind::ALL, "one object of every kind");
    if !failures.is_empty() {
        let shown = failures.iter().take(120).cloned().collect::<Vec<_>>().join("\n");
        panic!("{} mismatches over {cases} cases (kind × state × shape × door):\n{shown}", failures.len());
    }
}
