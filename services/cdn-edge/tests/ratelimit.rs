//! Per-client rate limits on a real origin and edge (session issuance,
//! purge, HLS requests), and "a view counts once": repeated masters without
//! a session id from one client for one video are one session and one view.
//!
//! The test process is on loopback, which the services trust as a proxy by
//! default, so each simulated client names itself in X-Forwarded-For (a
//! documentation address, RFC 5737), exactly as a front door would.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const FORWARDED: &str = "x-forwarded-for";

/// A burst's answers: how many passed, and the first refusal.
async fn burst(n: usize, send: impl Fn() -> reqwest::RequestBuilder) -> (usize, Option<reqwest::Response>) {
    let mut passed = 0;
    let mut refused = None;
    for _ in 0..n {
        let r = send().send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused.get_or_insert(r);
        } else {
            passed += 1;
        }
    }
    (passed, refused)
}

/// A 429 in the platform's form: problem+json, Retry-After in whole seconds.
async fn assert_refusal(r: reqwest::Response, route: &str) {
    assert_eq!(r.headers()["content-type"], "application/problem+json", "{route}");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1, "{route}: Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["code"], "rate-limited");
    assert_eq!(body["retry_after_seconds"], wait);
}

#[tokio::test]
async fn masters_and_play_urls_above_the_session_rate_get_429_per_client() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[("RATE_LIMIT_SESSIONS", "1/m burst=3".into())]).await;
    let master = format!("{}{}", origin.url(), c.path("master.m3u8"));
    let (passed, refused) = burst(5, || client().get(&master).header(FORWARDED, "198.51.100.10")).await;
    assert_eq!(passed, 3, "the burst passes, then the rate applies");
    assert_refusal(refused.expect("a refusal"), "master").await;
    // The play URL mints sessions too: the same allowance, already spent.
    let play = client().get(format!("{}/api/v1/videos/{}/play", origin.url(), c.video)).header(FORWARDED, "198.51.100.10").send().await.unwrap();
    assert_eq!(play.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other clients, and the platform itself (no forwarded client), are not held back.
    let other = client().get(&master).header(FORWARDED, "198.51.100.11").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(client().get(&master).send().await.unwrap().status(), StatusCode::OK);
    }
    // Media objects are not session issuance: never limited here.
    let seg = client().get(format!("{}{}", origin.url(), c.path("360p/seg_00000.m4s"))).header(FORWARDED, "198.51.100.10").send().await.unwrap();
    assert_eq!(seg.status(), StatusCode::OK);
    assert_eq!(metric(&origin.url(), "rate_limit_refusals_total").await, 3.0, "two masters and one play refused");
}

#[tokio::test]
async fn repeated_masters_without_a_session_id_from_one_client_count_one_view() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    let master = format!("{}{}", edge.url(), c.path("master.m3u8"));
    let mut sids = Vec::new();
    for _ in 0..6 {
        let r = client().get(&master).header(FORWARDED, "198.51.100.20").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        sids.push(r.headers()["x-session-id"].to_str().unwrap().to_owned());
    }
    assert!(sids.iter().all(|s| *s == sids[0]), "one client, one video: one session through the edge: {sids:?}");
    // The play API gives that client the same session.
    let play: Value = client().get(format!("{}/api/v1/videos/{}/play", origin.url(), c.video)).header(FORWARDED, "198.51.100.20").send().await.unwrap().json().await.unwrap();
    assert_eq!(play["session"], sids[0].as_str());
    let views = || async { client().get(format!("{}/api/v1/videos/{}/viewers", origin.url(), c.video)).send().await.unwrap().json::<Value>().await.unwrap()["views"].clone() };
    assert_eq!(views().await, 1);
    // Another client is another view; the platform's own requests (no
    // client to tell apart) still get a session each.
    let r = client().get(&master).header(FORWARDED, "198.51.100.21").send().await.unwrap();
    assert_ne!(r.headers()["x-session-id"].to_str().unwrap(), sids[0]);
    assert_eq!(views().await, 2);
    let (a, b) = (client().get(&master).send().await.unwrap(), client().get(&master).send().await.unwrap());
    assert_ne!(a.headers()["x-session-id"], b.headers()["x-session-id"]);
    assert_eq!(views().await, 4);
    assert_eq!(metric(&origin.url(), "origin_sessions_reused_total").await, 6.0, "five masters and one play answered with the first session");
}

#[tokio::test]
async fn purges_and_hls_requests_above_the_edge_rates_get_429() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[("RATE_LIMIT_PURGE", "1/m burst=2".into()), ("RATE_LIMIT_HLS", "1/m burst=4".into())]).await;
    let purge = || {
        client()
            .post(format!("{}/purge", edge.url()))
            .header(FORWARDED, "198.51.100.30")
            .bearer_auth(PURGE_TOKEN)
            .json(&serde_json::json!({"path": c.path("360p/seg_00000.m4s")}))
    };
    let (passed, refused) = burst(3, purge).await;
    assert_eq!(passed, 2);
    assert_refusal(refused.expect("a purge refusal"), "purge").await;
    // Refused before the token is even looked at: guessing it is throttled too.
    let guess = client().post(format!("{}/purge", edge.url())).header(FORWARDED, "198.51.100.30").bearer_auth("not-the-token-0123456789").json(&serde_json::json!({"prefix": "/hls/"})).send().await.unwrap();
    assert_eq!(guess.status(), StatusCode::TOO_MANY_REQUESTS);

    let seg = format!("{}{}", edge.url(), c.path("360p/seg_00000.m4s"));
    let (passed, refused) = burst(6, || client().get(&seg).header(FORWARDED, "198.51.100.31")).await;
    assert_eq!(passed, 4);
    assert_refusal(refused.expect("an HLS refusal"), "hls").await;
    assert_eq!(client().get(&seg).send().await.unwrap().status(), StatusCode::OK, "the platform itself is not limited");
    let text = client().get(format!("{}/metrics", edge.url())).send().await.unwrap().text().await.unwrap();
    let refusals = |route: &str| text.lines().filter(|l| l.starts_with("rate_limit_refusals_total{") && l.contains(&format!("route=\"{route}\""))).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum::<f64>();
    assert_eq!(refusals("purge"), 2.0);
    assert_eq!(refusals("hls"), 2.0);
}

#[tokio::test]
async fn a_player_reaching_an_edge_directly_is_counted_as_itself_at_the_origin() {
    let c = Catalogue::new().await;
    // Only 127.0.0.1 (the edge) is a proxy here; the player is 127.0.0.2,
    // as a viewer on the internet reaching the public secondary edge.
    let origin = origin(&c.world, &[("RATE_LIMIT_SESSIONS", "1/m burst=2".into()), ("RATE_LIMIT_TRUSTED_PROXIES", "127.0.0.1".into())]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    let player = reqwest::Client::builder().local_address(Some("127.0.0.2".parse().unwrap())).build().unwrap();
    let master = format!("{}{}", edge.url(), c.path("master.m3u8"));
    let first = player.get(&master).send().await.unwrap();
    let second = player.get(&master).send().await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first.headers()["x-session-id"], second.headers()["x-session-id"], "the edge told the origin who asked: one session");
    let third = player.get(&master).send().await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_refusal(third, "master through the edge").await;
}
