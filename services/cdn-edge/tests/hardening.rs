//! The delivery tier against hostile or unlucky requests, on a real origin
//! (S3, PostgreSQL, Redis) and real edges: the first request for a text
//! object with compression asked for (issue 19), paths that are not
//! normalised, 404s cached briefly, region labels from an allowlist, and
//! the edge's budget of bytes buffered by in-flight fetches.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;

fn object(name: &str) -> bytes::Bytes {
    ladder().into_iter().find(|(n, _)| *n == name).expect("in the ladder").1
}

/// The body as the object's bytes: gunzipped when the server gzipped it.
async fn decoded(r: reqwest::Response) -> Vec<u8> {
    let encoding = r.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_owned());
    let body = r.bytes().await.expect("the whole body, not a dropped connection");
    match encoding.as_deref() {
        None => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).expect("valid gzip");
            out
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
}

const TEXT_OBJECTS: [&str; 4] = ["manifest.mpd", "720p/index.m3u8", "audio/index.m3u8", "thumbnails.vtt"];

#[tokio::test]
async fn the_first_request_for_each_text_object_with_compression_asked_for_is_answered_whole() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let http = client();
    for encoding in ["gzip", "br", "gzip, deflate, br, zstd"] {
        // A new edge per encoding, so every request below is a cold miss.
        let edge = edge(&c.world, &origin.url(), &[]).await;
        for name in TEXT_OBJECTS {
            for (base, cold) in [(edge.url(), "MISS"), (edge.url(), "HIT"), (origin.url(), "")] {
                let r = http.get(format!("{base}{}", c.path(name))).header("accept-encoding", encoding).send().await;
                let r = r.unwrap_or_else(|e| panic!("{name} with {encoding} at {base}: {e}"));
                assert_eq!(r.status(), 200, "{name} {encoding} {base}");
                if !cold.is_empty() {
                    assert_eq!(r.headers()["x-cache"], cold, "{name} {encoding}");
                }
                if encoding.contains("gzip") {
                    assert_eq!(r.headers()["content-encoding"], "gzip", "{name} {encoding} {base}");
                }
                assert_eq!(decoded(r).await, object(name), "{name} {encoding} {base}: the object, byte for byte");
            }
        }
    }
}

#[tokio::test]
async fn coalesced_requests_for_a_cold_text_object_with_gzip_all_get_it_whole() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    let url = format!("{}{}", edge.url(), c.path("720p/index.m3u8"));
    let http = client();
    let all = futures::future::join_all((0..50).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        async move { decoded(http.get(&url).header("accept-encoding", "gzip").send().await.expect("an answer")).await }
    }))
    .await;
    assert!(all.iter().all(|b| b[..] == object("720p/index.m3u8")[..]));
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 1.0);
}

/// One HTTP/1.1 request written by hand: an HTTP client library would
/// resolve the dot segments before sending. Returns the status, the head
/// (lower-cased) and the body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out)).await.expect("an answer within 10 s").unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head[9..12].parse().unwrap(), head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn paths_with_dot_segments_or_encoded_separators_are_refused_before_any_lookup() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    let video = c.video;
    let refused = [
        "/hls/../metrics".to_owned(),
        "/hls/%2e%2e/metrics".to_owned(),
        "/hls/%2E%2E/%2e%2e/metrics".to_owned(),
        "/hls/a%2fb".to_owned(),
        "/hls/a%5Cb".to_owned(),
        "/steering/../metrics".to_owned(),
        format!("/hls/{video}/720p/../master.m3u8"),
        format!("/hls/{video}/./manifest.mpd"),
        format!("/hls/{video}/720p%2findex.m3u8"),
    ];
    for server in [&edge, &origin] {
        for path in &refused {
            let (status, head, body) = raw_get(server.addr, path).await;
            assert_eq!(status, 400, "{} {path}: {head}", server.url());
            assert!(head.contains("content-type: application/problem+json"), "{path}: {head}");
            let problem: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
            assert_eq!(problem["code"], "path-not-normalised", "{path}");
        }
        // A raw backslash is refused too (by the HTTP parser, or by us).
        assert_eq!(raw_get(server.addr, "/hls/a\\..\\metrics").await.0, 400);
    }
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 0.0, "nothing reached the origin");
    assert_eq!(metric(&edge.url(), "edge_requests_total").await, 0.0, "nothing reached the cache");
    // The object's own path still works, at both.
    for server in [&edge, &origin] {
        let (status, _, body) = raw_get(server.addr, &c.path("manifest.mpd")).await;
        assert_eq!(status, 200);
        assert_eq!(body.as_bytes(), &object("manifest.mpd")[..]);
    }
}

#[tokio::test]
async fn a_404_is_remembered_briefly_and_a_purge_forgets_it() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[("ORIGIN_NEGATIVE_TTL", "30s".into())]).await;
    let edge = edge(&c.world, &origin.url(), &[("EDGE_NEGATIVE_TTL", "30s".into())]).await;
    let http = client();
    let get = |base: String, path: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            let cache = r.headers().get("x-cache").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            (r.status().as_u16(), cache, ct, r.bytes().await.unwrap())
        }
    };

    // At the edge: one origin fetch for twenty requests.
    let unknown = format!("/hls/{}/720p/seg_00000.m4s", uuid::Uuid::now_v7());
    for i in 0..20 {
        let (status, cache, ct, _) = get(edge.url(), unknown.clone()).await;
        assert_eq!((status, ct.as_str()), (404, "application/problem+json"), "request {i}");
        assert_eq!(cache, if i == 0 { "MISS" } else { "HIT" }, "request {i}");
    }
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 1.0);
    assert_eq!(metric(&edge.url(), "edge_negative_hits_total").await, 19.0);

    // At the origin: one catalogue query for twenty requests about one unknown id.
    let before = metric(&origin.url(), "origin_catalogue_lookups_total").await;
    let other = uuid::Uuid::now_v7();
    for i in 0..20 {
        let (status, _, ct, _) = get(origin.url(), format!("/hls/{other}/360p/seg_{i:05}.m4s")).await;
        assert_eq!((status, ct.as_str()), (404, "application/problem+json"));
    }
    assert_eq!(metric(&origin.url(), "origin_catalogue_lookups_total").await - before, 1.0);
    assert_eq!(metric(&origin.url(), "origin_negative_hits_total").await, 19.0);

    // An object that appears later (a re-packaged rendition) is served once
    // its path is purged, not only after the TTL.
    let late = c.path("720p/seg_00099.m4s");
    assert_eq!(get(edge.url(), late.clone()).await.0, 404);
    assert_eq!(get(edge.url(), late.clone()).await.1, "HIT");
    let pool = c.world.backends.database.pool().unwrap();
    let video = shared::videos::Videos::new(pool).get(c.video).await.unwrap().unwrap();
    let prefix = shared::layout::served_prefix(video.master_key.as_deref().unwrap()).unwrap().to_owned();
    let bytes = noise(70_000, 99);
    c.world.backends.s3.store().put_bytes(&format!("{prefix}720p/seg_00099.m4s"), bytes.clone(), "video/iso.segment").await.unwrap();
    assert_eq!(get(edge.url(), late.clone()).await.0, 404, "still remembered");
    let r = http.post(format!("{}/purge", edge.url())).bearer_auth(PURGE_TOKEN).json(&serde_json::json!({ "prefix": c.path("720p/") })).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let (status, cache, _, body) = get(edge.url(), late).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    assert_eq!(body, bytes);
}

#[tokio::test]
async fn with_a_tiny_flight_budget_concurrent_misses_pass_through_whole() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[("EDGE_FLIGHT_BYTES", "100KiB".into())]).await;
    let http = client();
    let names = ["720p/seg_00000.m4s", "720p/seg_00001.m4s", "360p/seg_00000.m4s"];
    let all = futures::future::join_all((0..30).map(|i| {
        let (http, name) = (http.clone(), names[i % names.len()]);
        let url = format!("{}{}", edge.url(), c.path(name));
        async move {
            let r = http.get(&url).send().await.expect("an answer");
            assert_eq!(r.status(), 200, "{name}");
            let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
            (name, cache, r.bytes().await.expect("the whole body"))
        }
    }))
    .await;
    for (name, cache, body) in &all {
        assert_eq!(cache, "PASS", "{name}: larger than the budget, so not buffered");
        assert_eq!(body, &object(name), "{name}: the object, byte for byte");
    }
    assert!(metric(&edge.url(), "edge_flight_spills_total").await >= 3.0, "one spill per object at least");
    // What fits is still coalesced and cached.
    let small = format!("{}{}", edge.url(), c.path("720p/init_0.mp4"));
    assert_eq!(http.get(&small).send().await.unwrap().headers()["x-cache"], "MISS");
    assert_eq!(http.get(&small).send().await.unwrap().headers()["x-cache"], "HIT");
    eventually(Duration::from_secs(5), "every reservation released", || async { metric(&edge.url(), "edge_flight_bytes").await == 0.0 }).await;
}

#[tokio::test]
async fn an_unlisted_region_is_counted_as_other_in_sessions_steering_and_metrics() {
    let c = Catalogue::new().await;
    let origin = origin(
        &c.world,
        &[("VIEWER_REGIONS", "eu,us".into()), ("STEERING_PATHWAYS", "primary=,secondary=http://127.0.0.1:9".into())],
    )
    .await;
    let http = client();
    let master = format!("{}{}", origin.url(), c.path("master.m3u8"));
    let mut sids = Vec::new();
    for (query, header) in [("?region=eu", None), ("?region=mars", None), ("?region=%3Cscript%3E", None), ("", Some("venus")), ("", None)] {
        let mut req = http.get(format!("{master}{query}"));
        if let Some(h) = header {
            req = req.header("x-viewer-region", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        sids.push(r.headers()["x-session-id"].to_str().unwrap().to_owned());
    }
    let overview: serde_json::Value = admin_client(&c).await.get(format!("{}/api/v1/viewers", origin.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(overview["by_region"], serde_json::json!({ "eu": 1, "other": 4 }), "{overview}");
    let play: serde_json::Value = http.get(format!("{}/api/v1/videos/{}/play?region=mars", origin.url(), c.video)).send().await.unwrap().json().await.unwrap();
    assert_eq!(play["region"], "other");
    for sid in &sids {
        let r = http.get(format!("{}/steering/{}?sid={sid}", origin.url(), c.video)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let page = http.get(format!("{}/metrics", origin.url())).send().await.unwrap().text().await.unwrap();
    let labels: Vec<&str> = page.lines().filter(|l| l.starts_with("steering_secondary_active{")).collect();
    assert!(labels.iter().any(|l| l.contains("region=\"other\"")) && labels.iter().any(|l| l.contains("region=\"eu\"")), "{labels:?}");
    assert!(!page.contains("mars") && !page.contains("venus") && !page.contains("script"), "no invented label reached the metrics");
    let redis = c.world.backends.redis.cache().unwrap();
    let mut conn = redis.connection().await.unwrap();
    let mut regions: Vec<String> = redis::cmd("SMEMBERS").arg(format!("{}:regions", redis.prefix())).query_async(&mut conn).await.unwrap();
    regions.sort();
    assert_eq!(regions, ["eu", "other"], "no invented region reached Redis");
}
