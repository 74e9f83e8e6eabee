//! Live streaming end to end on the native stack: a creator makes a live
//! stream through NGINX, ffmpeg publishes a lavfi source over RTMP, viewers
//! read the LL-HLS playlists through NGINX and the edges (parts, preload
//! hints, rendition reports, blocking reloads coalesced at the edge), ffmpeg
//! decodes the live variant, a wrong key and a second publisher are
//! refused, and once the publisher stops and the grace period passes, the
//! recording becomes a ready video that decodes fully and lasts as long as
//! what was published.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const INGEST_HTTP: &str = "http://127.0.0.1:8004";
const RTMP: &str = "rtmp://127.0.0.1:1935/live";
/// What the test publishes, in seconds.
const PUBLISHED: u32 = 32;

fn publish(key: &str, secs: u32) -> Process {
    publish_sized(key, secs, "1280x720")
}

fn publish_sized(key: &str, secs: u32, size: &str) -> Process {
    publish_live(&format!("{RTMP}/{key}"), secs, size)
}

async fn refusals(reason: &str) -> f64 {
    let text = reqwest::get(format!("{INGEST_HTTP}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("live_publish_refusals_total") && l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A publisher that ffmpeg reports as refused: it exits with an error within seconds.
fn refused_publisher(key: &str) -> bool {
    let mut p = publish(key, 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = p.0.try_wait().unwrap() {
            return !status.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

async fn get_text(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    Some(match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split(',').next()?,
    })
}

#[tokio::test]
async fn a_published_stream_plays_as_ll_hls_through_the_edges_refuses_intruders_and_becomes_a_replay() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let viewer = stack.anonymous_client().unwrap();

    let res = client.post(format!("{}/api/v1/live", stack.nginx_http)).json(&json!({"title": "e2e live"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["stream_key"].as_str().unwrap().to_owned());
    let playback = created["playback_id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "idle");
    assert_eq!(created["ingest_url"], RTMP);

    let wrong_before = refusals("wrong-key").await;
    assert!(refused_publisher("lsk_not-a-key"), "a wrong key was not refused");
    assert_eq!(refusals("wrong-key").await, wrong_before + 1.0);

    let started = Instant::now();
    let mut publisher = publish(&key, PUBLISHED);
    let master_url = format!("{}/live/{playback}/master.m3u8", stack.nginx_http);
    let master = loop {
        let (status, text) = get_text(&viewer, &master_url).await;
        if status == StatusCode::OK {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no live master within 20 s: {status} {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let variants = variants(&master);
    assert!(!variants.is_empty(), "{master}");
    for (_, inf) in &variants {
        for a in ["BANDWIDTH", "AVERAGE-BANDWIDTH", "CODECS", "RESOLUTION", "FRAME-RATE", "AUDIO"] {
            assert!(attr(inf, a).is_some(), "{a} missing from {inf}");
        }
        assert!(attr(inf, "CODECS").unwrap().contains("avc1.") && attr(inf, "CODECS").unwrap().contains("mp4a.40.2"), "{inf}");
    }
    // Never above the 720p source.
    assert!(variants.iter().all(|(_, inf)| attr(inf, "RESOLUTION").unwrap().split('x').nth(1).unwrap().parse::<u32>().unwrap() <= 720), "{master}");
    assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO"), "{master}");
    // The origin's traffic manager steers live masters too: a session, every
    // variant once per pathway, and the steering server of this stream.
    assert!(master.contains("#EXT-X-CONTENT-STEERING:SERVER-URI=") && master.contains("PATHWAY-ID=\"secondary\""), "{master}");
    let sid = master.split("?sid=").nth(1).and_then(|r| r.get(..32)).expect("variant URIs carry the session").to_owned();
    let steering: Value = viewer.get(format!("{}/steering/{playback}?sid={sid}", stack.nginx_http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(steering["PATHWAY-PRIORITY"][0], "primary", "{steering}");

    let second_before = refusals("already-publishing").await;
    assert!(refused_publisher(&key), "a second publisher on a live key was not refused");
    assert_eq!(refusals("already-publishing").await, second_before + 1.0);

    let base = format!("{}/live/{playback}/", stack.nginx_http);
    // The primary pathway's top rung (relative), without the session query.
    let top = variants[0].0.split('?').next().unwrap().to_owned();
    let media_url = format!("{base}{top}");
    // The secondary pathway re-streams the primary: its edge pulls /live/ through the front door.
    let (secondary, _) = variants.iter().find(|(_, inf)| inf.contains("PATHWAY-ID=\"secondary\"")).expect("a secondary variant");
    let (status, text) = get_text(&viewer, secondary).await;
    assert_eq!(status, StatusCode::OK, "{secondary}: {text}");
    assert!(text.contains("#EXT-X-PART:"), "{text}");
    // A few seconds in, the playlist has closed segments, parts, a hint and the audio's report.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, playlist) = get_text(&viewer, &media_url).await;
    assert_eq!(status, StatusCode::OK, "{playlist}");
    for tag in ["#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=", "CAN-SKIP-UNTIL=", "#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-PART:DURATION=", "INDEPENDENT=YES", "#EXT-X-PRELOAD-HINT:TYPE=PART", "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\"", "#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-MAP:URI=\"init-0.mp4\""] {
        assert!(playlist.contains(tag), "{tag} missing:\n{playlist}");
    }
    assert!(!playlist.contains("#EXT-X-ENDLIST"));

    // Blocking reload for the hinted part: answered once it exists, listing it.
    let hint = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT")).unwrap();
    let hinted = attr(hint, "URI").unwrap().to_owned();
    let (msn, part): (u64, u32) = {
        let n: Vec<&str> = hinted.trim_start_matches("part-").trim_end_matches(".m4s").split('-').collect();
        (n[0].parse().unwrap(), n[1].parse().unwrap())
    };
    let (status, blocked) = get_text(&viewer, &format!("{media_url}?_HLS_msn={msn}&_HLS_part={part}")).await;
    assert_eq!(status, StatusCode::OK, "{blocked}");
    assert!(blocked.contains(&format!("URI=\"{hinted}\"")) && !blocked.contains(&format!("PRELOAD-HINT:TYPE=PART,URI=\"{hinted}\"")), "the blocking answer does not list the hinted part:\n{blocked}");
    // The hinted part itself, and a delta update.
    let part_res = viewer.get(format!("{base}{}", top.replace("index.m3u8", &hinted))).send().await.unwrap();
    assert_eq!(part_res.status(), StatusCode::OK);
    assert!(part_res.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(!part_res.bytes().await.unwrap().is_empty());
    // A hinted part is streamed while the encoder writes it, through NGINX
    // and the edge: its first chunk (a fragment) comes before the rest,
    // without a length, and the bytes are those of the complete part.
    let hint_of = |playlist: &str| playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT")).and_then(|l| attr(l, "URI")).expect("a preload hint").to_owned();
    let mut streamed = None;
    for _ in 0..5 {
        // Block until the hinted part is complete: the next hint is being written now.
        let (_, now) = get_text(&viewer, &media_url).await;
        let n: Vec<u64> = hint_of(&now).trim_start_matches("part-").trim_end_matches(".m4s").split('-').map(|x| x.parse().unwrap()).collect();
        let (_, fresh) = get_text(&viewer, &format!("{media_url}?_HLS_msn={}&_HLS_part={}", n[0], n[1])).await;
        let url = format!("{base}{}", top.replace("index.m3u8", &hint_of(&fresh)));
        let started = Instant::now();
        let mut res = viewer.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let lengthless = res.headers().get("content-length").is_none();
        let (mut body, mut first_at) = (Vec::new(), None);
        while let Some(c) = res.chunk().await.unwrap() {
            first_at.get_or_insert(started.elapsed());
            body.extend_from_slice(&c);
        }
        let spread = started.elapsed() - first_at.expect("a body");
        if lengthless && spread >= Duration::from_millis(50) {
            streamed = Some((url, body, spread));
            break;
        }
    }
    let (url, body, spread) = streamed.expect("no hinted part came streamed, first chunk well before the rest, in five tries");
    let whole = viewer.get(&url).send().await.unwrap();
    assert!(whole.headers().get("content-length").is_some(), "complete, it is cached with its length");
    assert_eq!(body, whole.bytes().await.unwrap().to_vec(), "streamed bytes differ from the complete part");
    eprintln!("a hinted part's first chunk came {spread:?} before its last byte");
    let (_, skipped) = get_text(&viewer, &format!("{media_url}?_HLS_skip=YES")).await;
    assert!(skipped.starts_with("#EXTM3U"));
    // Bad requests get problems, not hangs.
    let (status, body) = get_text(&viewer, &format!("{media_url}?_HLS_part=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = get_text(&viewer, &format!("{media_url}?_HLS_msn={}", msn + 50)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Fifty viewers blocked on the same future part at one edge: one upstream request.
    let edge_media = format!("{}/live/{playback}/{top}", stack.edge_1);
    let (n_msn, n_part) = (msn, part + 2);
    let before = scrape(INGEST_HTTP, "live_blocking_requests_total").await.unwrap();
    let waiters: Vec<_> = (0..50)
        .map(|i| {
            let (c, url) = (viewer.clone(), format!("{edge_media}?_HLS_msn={n_msn}&_HLS_part={n_part}&viewer={i}"));
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), StatusCode::OK);
    }
    let after = scrape(INGEST_HTTP, "live_blocking_requests_total").await.unwrap();
    assert_eq!(after - before, 1.0, "50 viewers blocked on one part made {} origin requests", after - before);

    // ffmpeg, a second client, decodes the live variant.
    let out = Command::new("ffmpeg").args(["-hide_banner", "-v", "error", "-i", &media_url, "-t", "3", "-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "ffmpeg could not decode the live variant: {}", String::from_utf8_lossy(&out.stderr));

    // The stream's encoder is killed: it is restarted, the playlist continues
    // after EXT-X-DISCONTINUITY with a new init segment, and players (hls.js
    // next) keep playing.
    let restarts_before = scrape(INGEST_HTTP, "live_encoder_restarts_total").await.unwrap();
    let (_, before_kill) = get_text(&viewer, &media_url).await;
    let generation = newest_init(&before_kill);
    let ingest_pid = std::fs::read_to_string(stack.stack_dir.join("pids/live-ingest.pid")).unwrap();
    // This stream's encoder: the one splitting into three rungs (the other tests publish one).
    let killed = Command::new("pkill").args(["-KILL", "-P", ingest_pid.trim(), "-f", "split=3"]).status().unwrap();
    assert!(killed.success(), "no encoder ffmpeg under live-ingest to kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, p) = get_text(&viewer, &media_url).await;
        if p.contains("#EXT-X-DISCONTINUITY") && newest_init(&p) > generation && !p.contains("#EXT-X-ENDLIST") {
            break;
        }
        assert!(Instant::now() < deadline, "no discontinuity with a new init segment after the encoder was killed:\n{p}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(scrape(INGEST_HTTP, "live_encoder_restarts_total").await.unwrap() > restarts_before);

    // hls.js in Chromium, low-latency mode, through NGINX and the edges, retries off.
    let lines = e2e::players::play_with(e2e::players::Player::HlsJs, &master_url, 10, &["--low-latency", "--switch-after", "4"]).await;
    let trouble = e2e::players::problems(e2e::players::Player::HlsJs, &master_url, &lines);
    assert!(trouble.is_empty(), "{trouble:#?}");
    let parts = e2e::players::events(&lines, "frag").filter(|f| f["part"].is_u64()).count();
    assert!(parts > 0, "hls.js loaded no parts: it did not play as LL-HLS");
    let blocking = e2e::players::events(&lines, "request").filter(|r| r["url"].as_str().is_some_and(|u| u.contains("_HLS_msn=")) && r["status"] == 200).count();
    assert!(blocking > 0, "hls.js made no blocking playlist reload");
    // A rung switch, asked for 4 s in: hls.js moves from the top rung to the lowest and plays on.
    assert!(e2e::players::events(&lines, "switch-requested").next().is_some(), "playback did not start in time to ask for a switch");
    let heights: Vec<u64> = e2e::players::events(&lines, "level").filter_map(|l| l["height"].as_u64()).collect();
    assert!(heights.first() > heights.last() && heights.last() == Some(&360), "no switch down to 360p: {heights:?}");
    let mut latency: Vec<f64> = e2e::players::events(&lines, "time").filter_map(|t| t["latency_ms"].as_f64()).collect();
    assert!(!latency.is_empty(), "hls.js never mapped the playhead to a PROGRAM-DATE-TIME");
    latency.sort_by(f64::total_cmp);
    // Printed, not asserted: latency targets are the benchmark's (scripts/bench-live).
    println!("hls.js glass-to-glass latency over {} s: p50 {:.0} ms, max {:.0} ms; {parts} parts, {blocking} blocking reloads", latency.len(), percentile(&latency, 0.5), latency[latency.len() - 1]);

    let live: Value = client.get(format!("{}/api/v1/live/{id}", stack.nginx_http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["state"], "live");
    assert_eq!(live["on_air"]["publishing"], true);
    assert!(live["viewers"].as_u64().is_some_and(|n| n >= 1), "the sessions of this test's masters are live viewers: {live}");

    // The publisher ends; after the grace period the broadcast ends and its replay is made.
    let status = tokio::task::spawn_blocking(move || publisher.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the publisher failed");
    let replay = replay_of(&client, &stack.nginx_http, &id).await;
    let (_, ended) = get_text(&viewer, &media_url).await;
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
    let video = wait_until_settled(&client, &stack.nginx_http, &replay, Duration::from_secs(300)).await.unwrap();
    assert_eq!(video["status"], "ready", "{}", video["error"]);
    // One pathway pinned: ffmpeg reads the plain master (see the pipeline test).
    let vod = format!("{}/hls/{replay}/master.m3u8?pathway=primary", stack.nginx_http);
    decode_fully(&vod).unwrap();
    let d = duration(&format!("{}/hls/{replay}/manifest.mpd", stack.nginx_http)).unwrap();
    // Within a segment (2 s) of what was published, less what the killed
    // encoder lost: its unfinished part and the frames until the
    // publisher's next key frame (a 1 s GOP) while the new one started.
    let p = f64::from(PUBLISHED);
    assert!(d <= p + 2.0 && d >= p - 2.0 - 3.0, "the replay lasts {d} s; {PUBLISHED} s were published");
}

#[tokio::test]
async fn the_live_api_refuses_bad_input_with_problems() {
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let url = format!("{}/api/v1/live", stack.nginx_http);
    let r = stack.anonymous_client().unwrap().post(&url).json(&json!({"title": "x"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for (body, status) in [("{", StatusCode::BAD_REQUEST), (r#"{"title": ""}"#, StatusCode::UNPROCESSABLE_ENTITY), (r#"{"title": "x", "extra": 1}"#, StatusCode::BAD_REQUEST)] {
        let r = client.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let r = client.get(format!("{url}/{}", uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = stack.anonymous_client().unwrap().get(format!("{}/live/{}/master.m3u8", stack.nginx_http, uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

/// The stream's replay video, once the broadcast has ended and the replay is in the catalogue.
async fn replay_of(client: &reqwest::Client, front: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s: Value = client.get(format!("{front}/api/v1/live/{id}")).send().await.unwrap().json().await.unwrap();
        if let Some(replay) = s["replay_video_id"].as_str() {
            assert_eq!(s["state"], "ended");
            return replay.to_owned();
        }
        assert!(Instant::now() < deadline, "the broadcast did not end: {s}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The newest init segment generation a media playlist names (`init-N.mp4`).
fn newest_init(playlist: &str) -> u32 {
    playlist.match_indices("init-").filter_map(|(i, _)| playlist[i + 5..].split('.').next()?.parse().ok()).max().unwrap_or(0)
}

/// Waits for a publisher to finish; true if it exited cleanly.
async fn finished(mut p: Process) -> bool {
    tokio::task::spawn_blocking(move || p.0.wait().is_ok_and(|s| s.success())).await.unwrap()
}

#[tokio::test]
async fn a_publisher_back_within_the_grace_period_continues_the_broadcast_after_a_discontinuity() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let viewer = stack.anonymous_client().unwrap();
    let created: Value = client.post(format!("{}/api/v1/live", stack.nginx_http)).json(&json!({"title": "e2e reconnect"})).send().await.unwrap().json().await.unwrap();
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["stream_key"].as_str().unwrap().to_owned());
    let master_url = created["playback_url"].as_str().unwrap().to_owned();
    // The owner watches the stream's state changes as server-sent events, through NGINX.
    let (sse_client, sse_url) = (client.clone(), format!("{}/api/v1/live/{id}/events", stack.nginx_http));
    let sse = tokio::spawn(async move {
        let mut res = sse_client.get(sse_url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut text = String::new();
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(90), res.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"replay_video_id\":\"") {
                break;
            }
        }
        text
    });
    // Subscribed before anything happens (the first event is the stream as created).
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A small source (one rung and audio): this test is about the timeline, not the ladder.
    assert!(finished(publish_sized(&key, 8, "640x360")).await, "the first publish failed");
    let (status, master) = get_text(&viewer, &master_url).await;
    assert_eq!(status, StatusCode::OK, "{master}");
    let (variant, _) = variants(&master).remove(0);
    let media_url = format!("{}{}", master_url.trim_end_matches("master.m3u8"), variant.split('?').next().unwrap());
    let s: Value = client.get(format!("{}/api/v1/live/{id}", stack.nginx_http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["state"], "live", "away for less than the grace period: still live: {s}");
    assert_eq!(s["on_air"]["publishing"], false);
    // Away long enough for the events' once-a-second poll to see it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back within the grace period (10 s on the stack): the same broadcast, the same URLs.
    let second = publish_sized(&key, 8, "640x360");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, p) = get_text(&viewer, &media_url).await;
        assert_eq!(status, StatusCode::OK, "the broadcast's playlist went away on reconnect: {p}");
        if p.contains("#EXT-X-DISCONTINUITY") && p.contains("#EXT-X-MAP:URI=\"init-1.mp4\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no discontinuity after the publisher came back:\n{p}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(finished(second).await, "the second publish failed");

    // Then gone for good: one replay of both publishes (two encoder generations).
    let replay = replay_of(&client, &stack.nginx_http, &id).await;
    // The events told the owner each change, in order: created, on air, away, back, away, ended,
    // and the replay's id.
    let events = tokio::time::timeout(Duration::from_secs(30), sse).await.expect("the event stream saw the end").unwrap();
    let seen: Vec<(String, bool)> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .map(|v| (v["state"].as_str().unwrap_or("").to_owned(), v["on_air"]["publishing"] == true))
        .collect();
    let want = [("idle", false), ("live", true), ("live", false), ("live", true), ("live", false), ("ended", false), ("ended", false)];
    assert_eq!(seen, want.map(|(s, p)| (s.to_owned(), p)), "events:\n{events}");
    let video = wait_until_settled(&client, &stack.nginx_http, &replay, Duration::from_secs(300)).await.unwrap();
    assert_eq!(video["status"], "ready", "{}", video["error"]);
    let d = duration(&format!("{}/hls/{replay}/manifest.mpd", stack.nginx_http)).unwrap();
    // Two publishes of 8 s; each loses at most its unfinished part at the end.
    assert!((13.0..=18.0).contains(&d), "the replay of two 8 s publishes lasts {d} s");
}
