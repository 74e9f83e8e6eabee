//! The delivery tier's HTTP, on a real origin (S3, PostgreSQL) and real
//! edges: range, conditional, MIME, gzip and CORS conformance at the origin
//! and at an edge; request coalescing; stale serving with the origin down;
//! the disk tier across a restart; tiered caching; purge on every edge.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use sha2::Digest;

/// The same conformance checks against any server of `/hls/`.
async fn check_http(base: &str, c: &Catalogue) {
    let http = client();
    let seg = ladder().into_iter().find(|(n, _)| *n == "720p/seg_00001.m4s").unwrap().1;
    let url = format!("{base}{}", c.path("720p/seg_00001.m4s"));
    let total = seg.len();

    // Ranges: single, open-ended, suffix; 416 outside.
    for (range, from, to) in [("bytes=0-99", 0, 99), ("bytes=299000-", 299_000, total - 1), ("bytes=-500", total - 500, total - 1)] {
        let r = http.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{base} {range}");
        assert_eq!(r.headers()["content-range"], format!("bytes {from}-{to}/{total}").as_str(), "{base} {range}");
        assert_eq!(r.bytes().await.unwrap(), seg.slice(from..=to), "{base} {range}");
    }
    let r = http.get(&url).header("range", format!("bytes={total}-")).send().await.unwrap();
    assert_eq!(r.status(), 416, "{base}");
    assert_eq!(r.headers()["content-range"], format!("bytes */{total}").as_str());
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Validators: ETag → 304; Last-Modified → 304.
    let full = http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    let modified = full.headers()["last-modified"].to_str().unwrap().to_owned();
    assert_eq!(full.bytes().await.unwrap(), seg);
    let r = http.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304, "{base} If-None-Match");
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(http.get(&url).header("if-none-match", "\"other\"").send().await.unwrap().status(), 200);
    let r = http.get(&url).header("if-modified-since", &modified).send().await.unwrap();
    assert_eq!(r.status(), 304, "{base} If-Modified-Since");

    // HEAD: the GET's headers, no body.
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], total.to_string().as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    // Media types.
    for (name, ct) in [
        ("720p/index.m3u8", "application/vnd.apple.mpegurl"),
        ("720p/init_0.mp4", "video/mp4"),
        ("720p/seg_00000.m4s", "video/iso.segment"),
        ("thumbnails.vtt", "text/vtt"),
        ("manifest.mpd", "application/dash+xml"),
        ("poster.jpg", "image/jpeg"),
    ] {
        let r = http.get(format!("{base}{}", c.path(name))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base} {name}");
        assert_eq!(r.headers()["content-type"], ct, "{base} {name}");
    }

    // gzip for playlists only, and the bytes survive it.
    let r = http.get(format!("{base}{}", c.path("720p/index.m3u8"))).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip", "{base}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.bytes().await.unwrap()[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text, media_playlist());
    let r = http.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none(), "{base}: segments are not gzipped");

    // CORS: a player on another origin may read the object and its headers.
    let r = http.get(&url).header("origin", "http://player.example").send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase().contains("content-range"));
    let r = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{base} preflight: {}", r.status());
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase().contains("range"));

    // Bad input: problem+json.
    let r = http.get(format!("{base}/hls/not-a-uuid/master.m3u8")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http.get(format!("{base}{}", c.path("../../etc/passwd.m3u8"))).send().await.unwrap();
    assert!(r.status() == 404 || r.status() == 400, "{}", r.status());
}

#[tokio::test]
async fn origin_and_edge_answer_ranges_validators_types_gzip_and_cors_alike() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    check_http(&origin.url(), &c).await;
    // Twice at the edge: the first pass fills it (misses), the second is all hits.
    check_http(&edge.url(), &c).await;
    check_http(&edge.url(), &c).await;
    let r = client().get(format!("{}{}", edge.url(), c.path("720p/seg_00001.m4s"))).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert!(r.headers().contains_key("age"));
}

#[tokio::test]
async fn five_hundred_concurrent_misses_make_one_origin_fetch_and_identical_bytes() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    let url = format!("{}{}", edge.url(), c.path("720p/seg_00000.m4s"));
    let want = hex::encode(sha2::Sha256::digest(&ladder().into_iter().find(|(n, _)| *n == "720p/seg_00000.m4s").unwrap().1));
    let http = client();
    let all = futures::future::join_all((0..500).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(&url).send().await.expect("response");
            assert_eq!(r.status(), 200);
            let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
            (cache, hex::encode(sha2::Sha256::digest(r.bytes().await.expect("body"))))
        }
    }))
    .await;
    assert!(all.iter().all(|(_, h)| *h == want), "every response is the object, byte for byte");
    assert_eq!(all.iter().filter(|(c, _)| c == "MISS").count(), 1, "exactly one request caused the fetch");
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 1.0);
    let origin_gets = client().get(format!("{}/metrics", origin.url())).send().await.unwrap().text().await.unwrap();
    let hls_gets: f64 = origin_gets
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("/hls/"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(hls_gets, 1.0, "the origin saw one request");
}

#[tokio::test]
async fn waiting_requests_get_the_first_bytes_before_the_object_is_complete() {
    // The origin throttled by a slow S3 is hard to arrange; instead a slow
    // parent: a tiny server that sends half, pauses, then the rest.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: video/iso.segment\r\ncache-control: max-age=60\r\ncontent-length: 8\r\n\r\nhalf";
    let (parent, release_tx) = one_answer_held_back(head, b"rest").await;
    let world = shared::testing::World::new().await;
    let edge = edge(&world, &parent, &[]).await;
    let url = format!("{}/hls/{}/720p/seg_00000.m4s", edge.url(), uuid::Uuid::now_v7());
    let mut first = client().get(&url).send().await.unwrap();
    let mut second = client().get(&url).send().await.unwrap();
    // Both have the first half while the parent still holds the rest back.
    for r in [&mut first, &mut second] {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk()).await.expect("bytes before completion").unwrap().unwrap();
        assert_eq!(&chunk[..], b"half");
    }
    release_tx.send(()).unwrap();
    assert_eq!(&first.bytes().await.unwrap()[..], b"rest");
    assert_eq!(&second.bytes().await.unwrap()[..], b"rest");
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 1.0);
}

#[tokio::test]
async fn a_live_part_streamed_without_a_length_is_one_flight_whose_chunks_reach_every_waiter() {
    // The live origin streams a part while the encoder writes it: chunked,
    // no Content-Length. It answers one request only: a second fetch would hang.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: video/iso.segment\r\ncache-control: public, max-age=31536000, immutable\r\ntransfer-encoding: chunked\r\n\r\n4\r\nhalf\r\n";
    let (live, release_tx) = one_answer_held_back(head, b"4\r\nrest\r\n0\r\n\r\n").await;
    let world = shared::testing::World::new().await;
    let edge = edge(&world, &live, &[("LIVE_ORIGIN_URL", live.clone())]).await;
    let url = format!("{}/live/{}/{}/720p/part-3-1.m4s", edge.url(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut waiters = Vec::new();
    for _ in 0..20 {
        waiters.push(client().get(&url).send().await.unwrap());
    }
    for r in &mut waiters {
        assert!(r.headers().get("content-length").is_none(), "a length the edge cannot know yet");
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk()).await.expect("the first chunk before the part is complete").unwrap().unwrap();
        assert_eq!(&chunk[..], b"half");
    }
    release_tx.send(()).unwrap();
    for r in waiters {
        assert_eq!(&r.bytes().await.unwrap()[..], b"rest");
    }
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 1.0);
    // Complete, it is a cached object like any other: a length, ranges.
    let again = client().get(&url).send().await.unwrap();
    assert_eq!(again.headers()["content-length"], "8");
    assert_eq!(&again.bytes().await.unwrap()[..], b"halfrest");
    let range = client().get(&url).header("range", "bytes=2-5").send().await.unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(&range.bytes().await.unwrap()[..], b"lfre");
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, 1.0);
}

#[tokio::test]
async fn with_the_origin_down_edges_serve_cached_and_stale_objects_and_the_disk_tier_survives_a_restart() {
    let c = Catalogue::new().await;
    let policy = [("CACHE_CONTROL_PLAYLIST", "public, max-age=1, stale-while-revalidate=1, stale-if-error=600".to_owned())];
    let origin = origin(&c.world, &policy).await;
    let disk = tempfile::tempdir().unwrap();
    let tiers = [("EDGE_DISK_DIR", disk.path().display().to_string())];
    let first = edge(&c.world, &origin.url(), &tiers).await;
    let http = client();
    let get = |base: String, object: &str| {
        let (http, url) = (http.clone(), format!("{base}{}", c.path(object)));
        async move {
            let r = http.get(&url).send().await.unwrap();
            (r.status().as_u16(), r.headers().get("x-cache").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default(), r.bytes().await.unwrap())
        }
    };
    let playlist = get(first.url(), "720p/index.m3u8").await;
    assert_eq!((playlist.0, playlist.1.as_str()), (200, "MISS"));
    assert_eq!(get(first.url(), "720p/seg_00000.m4s").await.1, "MISS");

    // Within stale-while-revalidate: served at once, refreshed behind.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(first.url(), "720p/index.m3u8").await.1, "STALE");
    eventually(Duration::from_secs(5), "background revalidation", || async { get(first.url(), "720p/index.m3u8").await.1 == "HIT" }).await;

    origin.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stale = get(first.url(), "720p/index.m3u8").await;
    assert_eq!((stale.0, stale.1.as_str()), (200, "STALE"), "stale-if-error while the origin is down");
    assert_eq!(stale.2, playlist.2);
    let seg = get(first.url(), "720p/seg_00000.m4s").await;
    assert_eq!((seg.0, seg.1.as_str()), (200, "HIT"));
    let never = get(first.url(), "360p/seg_00000.m4s").await;
    assert_eq!(never.0, 502, "an object never fetched cannot be served");

    // Restart the edge on the same disk, origin still down: the disk tier answers.
    first.stop().await;
    let second = edge(&c.world, "http://127.0.0.1:9", &tiers).await;
    let seg = get(second.url(), "720p/seg_00000.m4s").await;
    assert_eq!((seg.0, seg.1.as_str()), (200, "HIT"), "from disk after a restart");
    assert_eq!(seg.2, ladder().into_iter().find(|(n, _)| *n == "720p/seg_00000.m4s").unwrap().1);
    assert_eq!(metric(&second.url(), "edge_origin_fetches_total").await, 0.0);
}

#[tokio::test]
async fn a_child_edge_pulls_from_its_parent_edge_not_the_origin() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let parent = edge(&c.world, &origin.url(), &[]).await;
    let children = [edge(&c.world, &parent.url(), &[]).await, edge(&c.world, &parent.url(), &[]).await];
    for child in &children {
        let r = client().get(format!("{}{}", child.url(), c.path("720p/seg_00001.m4s"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "MISS");
        assert_eq!(metric(&child.url(), "edge_origin_fetches_total").await, 1.0);
    }
    assert_eq!(metric(&parent.url(), "edge_origin_fetches_total").await, 1.0, "the parent fetched once for both children");
    assert_eq!(metric(&parent.url(), "edge_requests_total").await, 2.0);
}

#[tokio::test]
async fn a_purge_reaches_every_edge_and_needs_the_token() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let edges = [edge(&c.world, &origin.url(), &[]).await, edge(&c.world, &origin.url(), &[]).await];
    let http = client();
    let cache_of = |base: String| {
        let (http, url) = (http.clone(), format!("{base}{}", c.path("720p/seg_00001.m4s")));
        async move { http.get(&url).send().await.unwrap().headers()["x-cache"].to_str().unwrap().to_owned() }
    };
    for e in &edges {
        cache_of(e.url()).await;
        assert_eq!(cache_of(e.url()).await, "HIT");
    }
    let purge = |token: &'static str, body: serde_json::Value| {
        let (http, url) = (http.clone(), format!("{}/purge", edges[0].url()));
        async move { http.post(&url).bearer_auth(token).json(&body).send().await.unwrap() }
    };
    let denied = purge("wrong-token-wrong-token", serde_json::json!({ "prefix": c.path("") })).await;
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.headers()["content-type"], "application/problem+json");
    let bad = purge(PURGE_TOKEN, serde_json::json!({ "prefix": "/etc/" })).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    // Both subscribers must be listening before the purge is published.
    let redis = c.world.backends.redis.cache().unwrap();
    let channel = format!("{}:edge-purge", redis.prefix());
    eventually(Duration::from_secs(10), "purge subscribers", || {
        let (redis, channel) = (redis.clone(), channel.clone());
        async move {
            let mut conn = redis.connection().await.unwrap();
            let n: Vec<(String, u64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut conn).await.unwrap_or_default();
            n.first().is_some_and(|(_, n)| *n >= 2)
        }
    })
    .await;
    let ok = purge(PURGE_TOKEN, serde_json::json!({ "prefix": c.path("") })).await;
    assert_eq!(ok.status(), 202);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["edges"], 2);
    for e in &edges {
        eventually(Duration::from_secs(5), "purged on every edge", || async { metric(&e.url(), "edge_purges_total").await >= 1.0 }).await;
        assert_eq!(cache_of(e.url()).await, "MISS", "{}", e.url());
    }
}

#[tokio::test]
async fn a_purge_sent_while_an_edge_was_down_is_applied_to_its_disk_when_it_restarts() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[]).await;
    let disk = tempfile::tempdir().unwrap();
    let tiers = [("EDGE_DISK_DIR", disk.path().display().to_string())];
    let url = |base: &str, object: &str| format!("{base}{}", c.path(object));
    let cache_of = |u: String| async move { client().get(u).send().await.unwrap().headers()["x-cache"].to_str().unwrap().to_owned() };
    let down = edge(&c.world, &origin.url(), &tiers).await;
    for object in ["720p/seg_00001.m4s", "360p/seg_00000.m4s"] {
        assert_eq!(cache_of(url(&down.url(), object)).await, "MISS");
    }
    // Disk writes finish just after the responses; wait for both files.
    let files = || std::fs::read_dir(disk.path()).unwrap().filter(|e| !e.as_ref().unwrap().path().extension().is_some_and(|x| x == "tmp")).count();
    eventually(Duration::from_secs(5), "both objects on disk", || async { files() == 2 }).await;
    down.stop().await;
    let up = edge(&c.world, &origin.url(), &[]).await;
    let r = client().post(format!("{}/purge", up.url())).bearer_auth(PURGE_TOKEN).json(&serde_json::json!({ "prefix": c.path("720p/") })).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let back = edge(&c.world, &origin.url(), &tiers).await;
    assert_eq!(cache_of(url(&back.url(), "720p/seg_00001.m4s")).await, "MISS", "the missed purge was replayed");
    assert_eq!(cache_of(url(&back.url(), "360p/seg_00000.m4s")).await, "HIT", "what the purge did not name stays on disk");
}
