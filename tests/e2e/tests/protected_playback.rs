//! Protected playback end to end (issue 12), on cold videos no request has
//! warmed, through both front doors:
//!
//! - a private video is encrypted (HLS AES-128) and plays in hls.js and in
//!   Shaka Player, with their retries off, from the signed URL its owner got
//!   from `/play`; ffmpeg decodes it too (a third, independent client);
//! - the same master without a token, and with an expired token, fails in
//!   the player and is 403 problem+json on the wire;
//! - after `DELETE`, every edge answers 404 for every object of a video,
//!   including the ones it had cached.

use std::time::Duration;

use e2e::players::{events, play, problems, Player};
use e2e::*;
use reqwest::StatusCode;
use serde_json::Value;

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const EDGES: [&str; 3] = ["http://127.0.0.1:8011", "http://127.0.0.1:8012", "http://127.0.0.1:8013"];

async fn upload(client: &reqwest::Client, base: &str, title: &str, visibility: &str, secs: u32) -> String {
    ready_clip_visible(client, base, title, visibility, secs, READY_TIMEOUT).await
}

/// The signed playback URL `/play` gives the owner, made absolute on `front`.
async fn signed_master(client: &reqwest::Client, base: &str, front: &str, id: &str) -> String {
    let r = client.get(format!("{base}/api/v1/videos/{id}/play")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let play: Value = r.json().await.unwrap();
    let url = play["url"].as_str().unwrap_or_else(|| panic!("no url in {play}"));
    assert!(url.contains("token="), "{play}");
    let path = url.find("/hls/").map(|i| &url[i..]).unwrap_or_else(|| panic!("{url}"));
    format!("{front}{path}")
}

/// A token past its expiry, signed with the stack's own key.
fn expired_token(id: &str) -> String {
    let keys = stack_env("streaming").into_iter().find(|(k, _)| k == "PLAYBACK_SIGNING_KEYS").expect("the stack signs playback").1;
    let signer: shared::playback::Signer = keys.parse().unwrap();
    signer.sign(id.parse().unwrap(), Duration::ZERO)
}

fn without_token(url: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let kept: Vec<&str> = query.split('&').filter(|kv| !kv.starts_with("token=") && !kv.is_empty()).collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

#[tokio::test]
async fn a_private_encrypted_video_plays_from_its_signed_url_in_hls_js_and_shaka_and_not_without_it() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let owner = stack.client().unwrap();
    let base = stack.nginx_http.clone();
    let fronts = [stack.nginx_http.clone(), stack.haproxy.clone()];
    let cases = [Player::HlsJs, Player::ShakaHls];
    // One cold video per (front door, player), transcoded side by side.
    let titles: Vec<String> = (0..fronts.len() * cases.len()).map(|i| format!("private-{i}")).collect();
    let ids = futures::future::join_all(titles.iter().map(|t| upload(&owner, &base, t, "private", 10))).await;

    let mut failures = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (front, player) = (&fronts[i / cases.len()], cases[i % cases.len()]);
        let url = signed_master(&owner, &base, front, id).await;
        // The renditions really are encrypted, and the key needs the token.
        let media = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let first_variant = variants(&media).first().map(|(u, _)| u.clone()).expect("a variant");
        let variant_url = format!("{front}/hls/{id}/{first_variant}");
        let playlist = reqwest::get(&variant_url).await.unwrap().text().await.unwrap();
        assert!(playlist.contains("#EXT-X-KEY:METHOD=AES-128"), "{playlist}");
        let lines = play(player, &url).await;
        let done = events(&lines, "done").next().cloned().unwrap_or(Value::Null);
        eprintln!("{player:?} via {front} (private, signed): played {} s, {} requests", done["played_seconds"], done["requests"]);
        failures.extend(problems(player, &url, &lines));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // ffmpeg, a third client: the whole signed video decodes (it fetches the key itself).
    let url = signed_master(&owner, &base, &stack.haproxy, &ids[0]).await;
    decode_fully(&url).unwrap();

    // Without a token, and with an expired one: refused on the wire and in the player.
    let id = &ids[0];
    let plain = without_token(&url);
    let expired = format!("{}{}token={}", plain, if plain.contains('?') { "&" } else { "?" }, expired_token(id));
    for (what, bad) in [("no token", plain.clone()), ("expired token", expired)] {
        let r = reqwest::get(&bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}: {bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{what}");
        let lines = play(Player::HlsJs, &bad).await;
        let done = events(&lines, "done").next().cloned().unwrap_or(Value::Null);
        assert!(done["fatal_errors"].as_u64().unwrap_or(0) >= 1, "{what}: hls.js must fail: {lines:?}");
        assert!(done["played_seconds"].as_f64().unwrap_or(0.0) < 0.5, "{what}: nothing plays: {done}");
    }
}

#[tokio::test]
async fn after_delete_every_edge_answers_404_for_every_object_it_had_cached() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let owner = stack.client().unwrap();
    let base = stack.nginx_http.clone();
    let id = upload(&owner, &base, "delete-reaches-edges", "public", 4).await;

    // Every object of the video, cached at every edge (the secondary pulls
    // through the front door, tiered).
    let master = reqwest::get(format!("{}/hls/{id}/master.m3u8?pathway=primary", EDGES[0])).await.unwrap().text().await.unwrap();
    let mut objects = vec![format!("/hls/{id}/poster.jpg"), format!("/hls/{id}/manifest.mpd")];
    for (variant, _) in variants(&master) {
        let path = variant.split('?').next().unwrap().to_owned();
        let playlist = reqwest::get(format!("{}/hls/{id}/{path}", EDGES[0])).await.unwrap().text().await.unwrap();
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        objects.push(format!("/hls/{id}/{path}"));
        objects.extend(media_objects(&playlist).iter().map(|o| format!("/hls/{id}/{dir}/{}", o.split('?').next().unwrap())));
    }
    for edge in EDGES {
        for o in &objects {
            let r = reqwest::get(format!("{edge}{o}")).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{edge}{o}");
            r.bytes().await.unwrap();
            let again = reqwest::get(format!("{edge}{o}")).await.unwrap();
            assert_eq!(again.headers().get("x-cache").map(|v| v.to_str().unwrap()), Some("HIT"), "{edge}{o} is cached");
        }
    }

    let r = owner.delete(format!("{base}/api/v1/videos/{id}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut served = Vec::new();
    for edge in EDGES {
        for o in &objects {
            let r = reqwest::get(format!("{edge}{o}")).await.unwrap();
            if r.status() != StatusCode::NOT_FOUND {
                served.push(format!("{edge}{o}: {} {:?}", r.status(), r.headers().get("x-cache")));
            }
        }
    }
    assert!(served.is_empty(), "{} of {} objects still served after DELETE:\n{}", served.len(), objects.len() * EDGES.len(), served.join("\n"));
}
