//! The platform end to end, on the native stack: upload over HTTP/2 through
//! NGINX, transcode, and playback with ffmpeg through NGINX → edge → origin
//! and through HAProxy. Bad input through the same front door.

use std::time::Duration;

use e2e::*;
use reqwest::StatusCode;

const READY_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_720p_upload_over_http2_becomes_an_aligned_ladder_playable_through_both_front_doors() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let dir = tempfile_dir();
    let clip = make_clip(dir.path(), "clip.mp4", 20, 1280, 720).unwrap();

    // Upload through NGINX over TLS; HTTP/2 is negotiated by ALPN and must be used.
    // A known trace id, to follow the upload across HTTP and AMQP into the worker.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let res = client
        .post(format!("{}/api/v1/videos?title=e2e+ladder", stack.nginx_https))
        .header("content-type", "video/mp4")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(std::fs::read(&clip).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "upload did not use HTTP/2");
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: serde_json::Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["size"].as_u64().unwrap(), std::fs::metadata(&clip).unwrap().len());

    let video = wait_until_settled(&client, &stack.nginx_http, &id, READY_TIMEOUT).await.unwrap();
    assert_eq!(video["status"], "ready", "video failed: {}", video["error"]);
    // Either worker (push or pull) may have taken the job.
    let worker_logs = ["transcode-worker", "transcode-worker-pull"].map(|w| std::fs::read_to_string(stack.stack_dir.join(format!("logs/{w}.log"))).unwrap_or_default());
    assert!(
        worker_logs.iter().flat_map(|l| l.lines()).any(|l| l.contains(&id) && l.contains(&trace_id)),
        "no worker's log carries the upload's trace id {trace_id}"
    );

    for front in [&stack.nginx_http, &stack.haproxy] {
        let base = format!("{front}/hls/{id}");
        // One pathway pinned: a plain master (the steered one lists every
        // variant once per pathway; see the viewers tests).
        let pinned = format!("{base}/master.m3u8?pathway=primary");
        let master = client.get(&pinned).send().await.unwrap().text().await.unwrap();
        assert!(master.contains("?sid="), "variant URIs carry the session: {master}");
        let variants = variants(&master);
        let names: Vec<&str> = variants.iter().map(|(uri, _)| uri.split('/').next().unwrap()).collect();
        assert_eq!(names, ["720p", "480p", "360p", "audio"], "rungs for a 720p source (none above it), then audio only");
        let video: Vec<_> = variants.iter().filter(|(_, attrs)| attrs.contains("RESOLUTION=")).cloned().collect();
        for (_, attrs) in &video {
            for attr in ["BANDWIDTH=", "AVERAGE-BANDWIDTH=", "CODECS=\"avc1.", ",mp4a.40.2\"", "RESOLUTION=", "FRAME-RATE=", "AUDIO=\"audio\""] {
                assert!(attrs.contains(attr), "{attr} missing in {attrs}");
            }
        }
        assert!(master.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        assert_eq!(master.matches("#EXT-X-I-FRAME-STREAM-INF:").count(), 3, "{master}");

        // The players: ffmpeg decodes every stream of every variant, over HLS and over DASH.
        decode_fully(&pinned).unwrap();
        decode_fully(&format!("{base}/manifest.mpd")).unwrap();
        let d = duration(&format!("{base}/manifest.mpd")).unwrap();
        assert!((d - 20.0).abs() <= 0.5, "the MPD lasts {d} s");
        for extra in ["poster.jpg", "thumbnails.vtt", "sprite_000.jpg"] {
            assert_eq!(client.get(format!("{base}/{extra}")).send().await.unwrap().status(), StatusCode::OK, "{extra}");
        }

        let mut keyframes = Vec::new();
        for (uri, _) in &video {
            let url = format!("{base}/{uri}");
            let d = duration(&url).unwrap();
            assert!((d - 20.0).abs() <= 0.5, "{uri} lasts {d} s");
            keyframes.push(keyframe_times_ms(&url).unwrap());
        }
        assert!(keyframes[0].len() >= 10, "expected a keyframe every 2 s: {:?}", keyframes[0]);
        assert!(keyframes[0].windows(2).all(|w| (w[1] - w[0] - 2000).abs() <= 50), "keyframes not every 2 s: {:?}", keyframes[0]);
        assert!(keyframes.iter().all(|k| k == &keyframes[0]), "keyframes differ across rungs: {keyframes:?}");

        // Second playback: every object now comes from an edge's cache.
        // (The master itself is per viewer and never cached.)
        let mut objects = Vec::new();
        for (uri, _) in &variants {
            let rung = uri.split('/').next().unwrap();
            objects.push(uri.clone());
            let playlist = client.get(format!("{base}/{uri}")).send().await.unwrap().text().await.unwrap();
            objects.extend(media_objects(&playlist).into_iter().map(|o| format!("{rung}/{o}")));
        }
        for o in &objects {
            let res = client.get(format!("{base}/{o}")).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{o}");
            assert_eq!(res.headers().get("x-cache").map(|v| v.to_str().unwrap()), Some("HIT"), "{o} via {front}");
        }
    }
}

#[tokio::test]
async fn concurrent_misses_for_one_object_make_one_origin_request() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let id = ready_clip(&client, &stack.nginx_http, "coalescing", 4, 640, 360, READY_TIMEOUT).await;

    // The poster has never been requested: a cold object on edge 1.
    let url = format!("{}/hls/{id}/poster.jpg", stack.edge_1);
    let fetches = || async { scrape(&stack.edge_1, "edge_origin_fetches_total").await.unwrap() };
    let before = fetches().await;
    let responses = futures::future::join_all((0..50).map(|_| async {
        let r = client.get(&url).send().await.unwrap();
        let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
        (r.status(), cache, r.bytes().await.unwrap())
    }))
    .await;
    assert_eq!(fetches().await - before, 1.0, "origin fetches for 50 concurrent misses");
    assert!(responses.iter().all(|(s, _, b)| *s == StatusCode::OK && b == &responses[0].2), "every response byte-identical");
    assert_eq!(responses.iter().filter(|(_, c, _)| c == "MISS").count(), 1);

    // The origin states what caches need.
    let origin = format!("http://127.0.0.1:8003/hls/{id}");
    for (object, ctype, cache) in [
        ("master.m3u8", "application/vnd.apple.mpegurl", "private, no-store"),
        ("360p/index.m3u8", "application/vnd.apple.mpegurl", "max-age=3600"),
        ("poster.jpg", "image/jpeg", "immutable"),
    ] {
        let r = client.get(format!("{origin}/{object}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{object}");
        assert_eq!(r.headers()["content-type"], ctype, "{object}");
        assert!(r.headers()["cache-control"].to_str().unwrap().contains(cache), "{object}");
        assert!(r.headers().contains_key("content-length"), "{object}");
        // Shared objects carry a validator; the per-viewer master does not.
        assert_eq!(r.headers().contains_key("etag"), object != "master.m3u8", "{object}");
    }
    // Encoded slashes and dot segments never reach a lookup (issue 11).
    let r = client.get(format!("{origin}/..%2F..%2Fsources/x.m3u8")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Ranges are cut from the cached copy.
    let r = client.get(&url).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), responses[0].2.slice(0..100));
}

#[tokio::test]
async fn non_video_bytes_fail_with_a_reason_after_exactly_one_attempt() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let res = client
        .post(format!("{}/api/v1/videos?title=notes", stack.nginx_http))
        .header("content-type", "video/mp4")
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let video = wait_until_settled(&client, &stack.nginx_http, &id, READY_TIMEOUT).await.unwrap();
    assert_eq!(video["status"], "failed");
    assert!(video["error"].as_str().unwrap().contains("not a media file"), "{}", video["error"]);

    let db = database().await.unwrap();
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM transcode_attempts WHERE video_id = $1::uuid")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(attempts, 1);

    // Never playable.
    let res = client.get(format!("{}/hls/{id}/master.m3u8", stack.nginx_http)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_front_door_answers_bad_uploads_with_problem_json() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let client = stack.client().unwrap();
    let url = format!("{}/api/v1/videos", stack.nginx_https);

    let empty = client.post(&url).header("content-type", "video/mp4").body(Vec::<u8>::new()).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert_eq!(empty.headers()["content-type"], "application/problem+json");
    assert_eq!(empty.json::<serde_json::Value>().await.unwrap()["code"], "empty-body");

    let text = client.post(&url).header("content-type", "text/plain").body("hello").send().await.unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(text.json::<serde_json::Value>().await.unwrap()["code"], "unsupported-media-type");
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[tokio::test]
async fn each_front_door_speaks_the_protocols_it_advertises() {
    let _panics = e2e::PanicWatch::start();
    let stack = Stack::from_env();
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let tls = stack.client().unwrap();
    let cases: [(&reqwest::Client, String, reqwest::Version); 5] = [
        (&h1, stack.nginx_http.clone(), reqwest::Version::HTTP_11),
        (&h2c, "http://127.0.0.1:8082".into(), reqwest::Version::HTTP_2),
        (&tls, stack.nginx_https.clone(), reqwest::Version::HTTP_2),
        (&h1, stack.haproxy.clone(), reqwest::Version::HTTP_11),
        (&h2c, stack.haproxy.clone(), reqwest::Version::HTTP_2),
    ];
    for (client, base, version) in cases {
        let res = client.get(format!("{base}/api/v1/videos?limit=1")).send().await.unwrap();
        assert_eq!((res.status(), res.version()), (StatusCode::OK, version), "{base}");
    }

    // NGINX refuses an announced oversize body itself, in the platform's problem format.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect("127.0.0.1:8080").await.unwrap();
    conn.write_all(b"POST /api/v1/videos HTTP/1.1\r\nHost: localhost\r\nContent-Type: video/mp4\r\nContent-Length: 3000000000\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut head)).await.expect("NGINX answers at once").unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
}
