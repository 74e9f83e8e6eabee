//! Two independent players, with their retries off, play videos no request
//! has warmed yet, through both front doors (issue 19): Shaka Player on the
//! DASH manifest and on the HLS master, hls.js on the HLS master, each in
//! headless Chromium (`clients/shaka_play.mjs`, `clients/hls_play.mjs`).
//!
//! Why cold and without retries: the first request for an object at an edge
//! is a different code path from every later one (a miss, a coalesced
//! flight, gzip on the way out), and a player that retries turns a server
//! failure on that path into a short stall nobody sees. hls.js did exactly
//! that while Shaka, which gave up, showed the edges' panic. So each case
//! gets a video of its own, transcoded for this test and never fetched
//! before (readiness is polled on the API, not on /hls/), and asserts no
//! player error (hls.js's non-fatal ones included), no gap Shaka had to
//! jump and no stall, no retry, no failed request, that the edge really
//! was cold (some answer says `X-Cache: MISS`), and that playback advanced.

use std::time::Duration;

use e2e::players::{events, play, problems, Player};
use e2e::*;
use serde_json::Value;

#[tokio::test]
async fn shaka_and_hls_js_play_cold_videos_through_both_front_doors_without_errors_or_retries() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let mut cases: Vec<(&str, Player)> = Vec::new();
    for front in [stack.nginx_http.as_str(), stack.haproxy.as_str()] {
        cases.extend([Player::ShakaDash, Player::ShakaHls, Player::HlsJs].map(|p| (front, p)));
    }

    // One small video per case, transcoded side by side (the two workers
    // take one each at a time).
    let titles: Vec<String> = (0..cases.len()).map(|i| format!("players-{i}")).collect();
    let ids = futures::future::join_all(titles.iter().map(|t| ready_clip(&client, &stack.nginx_http, t, 10, 320, 180, Duration::from_secs(300)))).await;

    let mut failures = Vec::new();
    for ((front, player), id) in cases.iter().zip(&ids) {
        let url = player.url(front, id);
        let lines = play(*player, &url).await;
        let done = events(&lines, "done").next().cloned().unwrap_or(Value::Null);
        eprintln!("{player:?} via {front}: played {} s, {} requests, {} {}", done["played_seconds"], done["requests"], player.retry_count(), done[player.retry_count()]);
        failures.extend(problems(*player, &url, &lines));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
