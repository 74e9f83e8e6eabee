//! The delivery conformance matrix in one process (issue 19): every object
//! kind × every edge cache state × every request shape, straight at a real
//! origin and at real edges over an isolated world, each answer checked
//! against the object in S3 by `tests/e2e/src/conformance/` (the rows and
//! their expectations, shared with the front-door suite).
//!
//! Each state is built once and every shape is asked of it at once. A state
//! that the first request changes (cold, purged, coalesced, too large) must
//! be met fresh by each shape, so every shape has its own video: the same
//! objects under another id, hence other cache keys. The states:
//! - cold, hit, purged, pass: an edge each on the origin; the purged one on
//!   its own Redis prefix, so its purges reach no other edge of the test;
//! - coalesced: an edge behind a gate that holds origin fetches until every
//!   follower has asked;
//! - stale within SWR: an origin whose objects are fresh for 1 s, behind a
//!   gate that holds the background revalidation, so the copy stays stale;
//! - stale-if-error: an origin fresh for 1 s, with no SWR, stopped.

mod common;
#[path = "../../../tests/e2e/src/conformance/mod.rs"]
mod conformance;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::gate::Gate;
use common::*;
use conformance::{Kind, Object, Policy, Row, Shape, State, SHAPES};
use futures::StreamExt;
use shared::sessions::SessionId;

const TEXT_POLICY: &str = "public, max-age=3600, stale-while-revalidate=60, stale-if-error=86400";
const MEDIA_POLICY: &str = "public, max-age=31536000, immutable, stale-if-error=86400";
/// Stale after 1 s, then served stale while a revalidation runs.
const SWR_POLICY: &str = "public, max-age=1, stale-while-revalidate=600";
/// Stale after 1 s, then served stale only if the origin fails.
const SIE_POLICY: &str = "public, max-age=1, stale-if-error=600";
/// Requests in flight at once: enough to finish quickly, few enough for a 2-core machine.
const CONCURRENCY: usize = 48;

fn policy(text: &str, media: &str) -> Policy {
    Policy { text: text.into(), media: media.into() }
}

fn origin_policy(p: &Policy) -> [(&'static str, String); 2] {
    [("CACHE_CONTROL_PLAYLIST", p.text.clone()), ("CACHE_CONTROL_SEGMENT", p.media.clone())]
}

/// One object of every kind, linked as the worker links them (the matrix
/// finds each kind from the master, as a player would). The VTT is shorter
/// than 100 bytes, so the ranges meet the end of an object too.
fn files() -> Vec<(&'static str, Bytes)> {
    let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Main\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"audio\"\n720p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"audio\"\n360p/index.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"720p/iframes.m3u8\"\n";
    let mut iframes = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI=\"init_0.mp4\"\n");
    for i in 0..10 {
        iframes.push_str(&format!("#EXTINF:6.000000,\n#EXT-X-BYTERANGE:4096@{}\nseg_{i:05}.m4s\n", 800 + i));
    }
    iframes.push_str("#EXT-X-ENDLIST\n");
    vec![
        ("master.m3u8", Bytes::from_static(master.as_bytes())),
        ("720p/index.m3u8", Bytes::from(media_playlist())),
        ("720p/iframes.m3u8", Bytes::from(iframes)),
        ("720p/init_0.mp4", noise(1500, 1)),
        ("720p/seg_00000.m4s", noise(300_000, 2)),
        ("manifest.mpd", Bytes::from_static(b"<?xml version=\"1.0\"?><MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\"></MPD>")),
        ("thumbnails.vtt", Bytes::from_static(b"WEBVTT\n\n00:00.000 --> 00:02.000\nsprite_000.jpg#xywh=0,0,160,90\n")),
        ("sprite_000.jpg", noise(20_000, 3)),
        ("poster.jpg", noise(5000, 4)),
    ]
}

/// A video of [`files`]: its public path and its objects as S3 holds them.
struct Video {
    path: String,
    objects: Vec<Object>,
}

async fn video(world: &shared::testing::World) -> Video {
    let storage = world.backends.s3.store();
    let pool = world.backends.database.pool().expect("pool");
    let videos = shared::videos::Videos::new(pool.clone());
    let id = shared::testing::ready_video(&storage, &videos, &pool, &files()).await.expect("ready video");
    let key = videos.get(id).await.expect("catalogue").expect("row").master_key.expect("master key");
    let prefix = shared::layout::served_prefix(&key).expect("served prefix").to_owned();
    Video { path: format!("/hls/{id}/"), objects: conformance::objects(&storage, &prefix).await.expect("objects in S3") }
}

/// One case to run: the row's coordinates and where to send it.
struct Case {
    kind: Kind,
    state: State,
    shape: &'static Shape,
    path: &'static str,
    base: String,
    object: Object,
    policy: Policy,
}

/// Runs `cases` at most `concurrency` at a time; the mismatches, each naming its row.
async fn run(cases: Vec<Case>, concurrency: usize, sid: &SessionId) -> Vec<String> {
    let client = conformance::raw_client().build().unwrap();
    futures::stream::iter(cases)
        .map(|c| {
            let client = client.clone();
            async move {
                let seen = conformance::send(conformance::request(&client, &c.base, &c.object, c.shape, sid)).await;
                let row = Row { kind: c.kind, state: c.state, shape: c.shape, path: c.path };
                conformance::check(&row, &c.object, &c.policy, sid, &seen)
            }
        })
        .buffer_unordered(concurrency)
        .concat()
        .await
}

/// Every (shape, object) of a state: shape i asks for video i's objects.
fn cases(videos: &[Video], state: State, path: &'static str, server: &str, policy: &Policy) -> Vec<Case> {
    let mut out = Vec::new();
    for (shape, video) in SHAPES.iter().zip(videos) {
        for o in &video.objects {
            out.push(Case { kind: o.kind, state, shape, path, base: format!("{server}{}", video.path), object: o.clone(), policy: policy.clone() });
        }
    }
    out
}

/// A plain GET of every object at `server`, then waits until each shared
/// one answers from the store (an `Age`), not from its finishing fetch.
async fn warm(server: &str, videos: &[Video]) {
    let http = client();
    let all: Vec<(String, Kind)> = videos.iter().flat_map(|v| v.objects.iter().map(move |o| (format!("{server}{}{}", v.path, o.name), o.kind))).collect();
    futures::stream::iter(all.clone())
        .for_each_concurrent(CONCURRENCY, |(url, _)| {
            let http = http.clone();
            async move {
                let r = http.get(&url).send().await.unwrap_or_else(|e| panic!("warming {url}: {e}"));
                assert_eq!(r.status(), 200, "warming {url}");
                r.bytes().await.unwrap_or_else(|e| panic!("warming {url}: {e}"));
            }
        })
        .await;
    for (url, kind) in all.into_iter().filter(|(_, k)| !k.per_viewer()) {
        eventually(Duration::from_secs(10), &format!("{url} ({}) stored", kind.label()), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.head(&url).send().await.is_ok_and(|r| r.headers().contains_key("age")) }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_in_every_cache_state_answers_every_request_shape_correctly() {
    let world = shared::testing::World::new().await;
    world.backends.s3.store().ensure_bucket().await.expect("bucket");
    let videos: Vec<Video> = futures::future::join_all(SHAPES.iter().map(|_| video(&world))).await;
    let (main, swr, sie) = (policy(TEXT_POLICY, MEDIA_POLICY), policy(SWR_POLICY, SWR_POLICY), policy(SIE_POLICY, SIE_POLICY));

    let main_origin = origin(&world, &origin_policy(&main)).await;
    let swr_origin = origin(&world, &origin_policy(&swr)).await;
    let sie_origin = origin(&world, &origin_policy(&sie)).await;
    let coalescing = Gate::new(&main_origin.url(), conformance::raw_client().build().unwrap()).await;
    let revalidation = Gate::new(&swr_origin.url(), conformance::raw_client().build().unwrap()).await;
    let own_purges = [("REDIS_PREFIX", format!("{}-purged", world.backends.redis.prefix))];
    let cold = edge(&world, &main_origin.url(), &[]).await;
    let coalesced = edge(&world, &coalescing.url, &[]).await;
    let hit = edge(&world, &main_origin.url(), &[]).await;
    let stale = edge(&world, &revalidation.url, &[]).await;
    let stale_if_error = edge(&world, &sie_origin.url(), &[]).await;
    let purged = edge(&world, &main_origin.url(), &own_purges).await;
    let pass = edge(&world, &main_origin.url(), &[("EDGE_MAX_OBJECT_BYTES", "1".to_owned())]).await;

    for e in [&hit, &stale, &stale_if_error, &purged] {
        warm(&e.url(), &videos).await;
    }
    revalidation.hold();
    sie_origin.stop().await;
    let http = client();
    for v in &videos {
        let r = http.post(format!("{}/purge", purged.url())).bearer_auth(PURGE_TOKEN).json(&serde_json::json!({ "prefix": v.path })).send().await.unwrap();
        assert_eq!(r.status(), 202, "purge {}", v.path);
    }
    // Past the 1 s freshness of the SWR and SIE copies.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let sid = SessionId::new();
    let mut all = Vec::new();
    all.extend(cases(&videos, State::Direct, "origin", &main_origin.url(), &main));
    all.extend(cases(&videos, State::Cold, "edge", &cold.url(), &main));
    all.extend(cases(&videos, State::Hit, "edge", &hit.url(), &main));
    all.extend(cases(&videos, State::StaleRevalidate, "edge", &stale.url(), &swr));
    all.extend(cases(&videos, State::StaleIfError, "edge", &stale_if_error.url(), &sie));
    all.extend(cases(&videos, State::Purged, "edge", &purged.url(), &main));
    all.extend(cases(&videos, State::Pass, "edge", &pass.url(), &main));
    let total = all.len() + 2 * SHAPES.len() * Kind::ALL.len();
    let coalesced_url = coalesced.url();
    let (mut failures, coalescing_failures) = tokio::join!(run(all, CONCURRENCY, &sid), coalesce(&coalesced_url, &coalescing, &videos, &main, &sid));
    failures.extend(coalescing_failures);
    revalidation.release();

    eprintln!("{total} cases, {} mismatches", failures.len());
    if !failures.is_empty() {
        failures.sort();
        let shown = failures.iter().take(120).cloned().collect::<Vec<_>>().join("\n");
        panic!("{} mismatches over {total} cases (kind × state × shape × path):\n{shown}", failures.len());
    }
}

/// The coalesced state: a plain GET leads each object's fetch, which the
/// gate holds; then every shape asks for it, joining that fetch; then the
/// gate opens. Leaders are checked as cold misses. The origin must have
/// seen one fetch per object, whatever the followers asked.
async fn coalesce(edge: &str, gate: &Gate, videos: &[Video], policy: &Policy, sid: &SessionId) -> Vec<String> {
    static LEAD: Shape = SHAPES[0];
    gate.hold();
    let shared_objects = videos.iter().flat_map(|v| &v.objects).filter(|o| !o.kind.per_viewer()).count();
    let leaders = cases(videos, State::Cold, "edge, leading a fetch others join", edge, policy).into_iter().map(|c| Case { shape: &LEAD, ..c }).collect::<Vec<_>>();
    let leaders = tokio::spawn({
        let sid = sid.clone();
        // All at once: each waits at the gate until every follower has asked.
        async move { run(leaders, usize::MAX, &sid).await }
    });
    eventually(Duration::from_secs(20), "every leader's fetch reaches the origin", || async { gate.held.load(Ordering::SeqCst) >= shared_objects }).await;
    let followers = tokio::spawn({
        let (sid, cases) = (sid.clone(), cases(videos, State::Coalesced, "edge", edge, policy));
        async move { run(cases, usize::MAX, &sid).await }
    });
    // Followers only ask an idle server on loopback; one that came after the
    // gate opened would be a plain hit and still pass, so this wait is for
    // coverage, not correctness.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.release();
    let mut failures = leaders.await.expect("leaders");
    failures.extend(followers.await.expect("followers"));
    let fetched = gate.held.load(Ordering::SeqCst);
    if fetched != shared_objects {
        failures.push(format!("coalesced: the origin was asked {fetched} times for {shared_objects} objects"));
    }
    failures
}
