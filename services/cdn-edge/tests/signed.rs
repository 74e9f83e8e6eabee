//! Protected playback (issue 12) on a real origin and real edges: objects of
//! a private video are served only with a valid playback token, from every
//! tier and from a joined flight, one cached copy for every authorised
//! viewer; each refusal is a 403 problem+json counted by reason; playlists
//! carry the token onto every URI, the content key included; the key is
//! never cached; public videos play as before; the play API hands a private
//! video's signed URL to its owner and admins only.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::gate::Gate;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use shared::auth::Role;
use shared::sessions::SessionId;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);
const KEY_URI: &str = "../content.key";

/// The ladder, its 720p rendition encrypted as the worker leaves it: the
/// media playlist names the content key after the init segment.
fn protected_files() -> Vec<(&'static str, Bytes)> {
    let media = media_playlist().replace("#EXT-X-MAP:URI=\"init_0.mp4\"\n", &format!("#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"{KEY_URI}\"\n"));
    ladder().into_iter().map(|(n, b)| if n == "720p/index.m3u8" { (n, Bytes::from(media.clone())) } else { (n, b) }).collect()
}

fn object(name: &str) -> Bytes {
    ladder().into_iter().find(|(n, _)| *n == name).unwrap().1
}

/// The edge's refusals for one reason.
async fn refusals(base: &str, series: &str, reason: &str) -> f64 {
    let text = client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let label = format!("reason=\"{reason}\"");
    text.lines().filter(|l| l.starts_with(series) && l.contains(&label)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

const EDGE_REFUSALS: &str = "edge_playback_token_refusals_total";
const ORIGIN_REFUSALS: &str = "playback_token_refusals_total";

/// A 403 problem+json with the refusal's code, still marked signed.
async fn assert_refused(r: reqwest::Response, reason: &str) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{reason}");
    assert_eq!(r.headers()["content-type"], "application/problem+json", "{reason}");
    assert_eq!(r.headers()["x-playback-access"], "signed", "{reason}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], format!("playback-token-{}", reason.replace('_', "-")), "{body}");
    assert_eq!(body["status"], 403);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
}

/// A private video (encrypted, owned by `owner`) beside a public one, an
/// origin and an edge on it. (Bind `origin` when destructuring: a dropped
/// `Running` stops its server.)
struct Setup {
    c: Catalogue,
    public: Uuid,
    key: [u8; 16],
    origin: Running,
    edge: Running,
}

async fn setup(owner: Option<Uuid>) -> Setup {
    let c = Catalogue::with(&protected_files()).await;
    let key = c.protect(c.video, "private", owner.unwrap_or_else(Uuid::new_v4)).await;
    let public = Catalogue::add(&c.world, &ladder()).await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    Setup { c, public, key, origin, edge }
}

#[tokio::test]
async fn a_private_segment_needs_a_valid_token_and_one_cached_copy_serves_every_viewer() {
    let Setup { c, public, origin, edge, .. } = setup(None).await;
    let http = client();
    let seg = format!("{}{}", edge.url(), c.path("720p/seg_00001.m4s"));
    let want = object("720p/seg_00001.m4s");

    // Without a token: refused at the origin (which the edge asked, holding
    // no copy) and at the edge. (Another object than the one fetched next:
    // a viewer right behind could join this refused fetch, and be passed
    // through rather than counted a miss.)
    assert_refused(http.get(format!("{}{}", edge.url(), c.path("720p/init_0.mp4"))).send().await.unwrap(), "missing").await;
    assert_eq!(refusals(&edge.url(), EDGE_REFUSALS, "missing").await, 1.0);
    assert_eq!(refusals(&origin.url(), ORIGIN_REFUSALS, "missing").await, 1.0);

    // With a token: fetched once, then a hit, for this viewer and any other authorised one.
    let (a, b) = (token(c.video, HOUR), token(c.video, 2 * HOUR));
    assert_ne!(a, b);
    let r = http.get(format!("{seg}?token={a}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.headers()["x-playback-access"], "signed");
    let cc = r.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cc.starts_with("private") && !cc.contains("public"), "no shared cache downstream may keep it: {cc}");
    assert!(cc.contains("max-age=31536000"), "the origin's lifetime is kept: {cc}");
    assert_eq!(r.bytes().await.unwrap(), want);
    let r = http.get(format!("{seg}?token={a}")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.bytes().await.unwrap(), want);
    let r = http.get(format!("{seg}?sid={}&token={b}", SessionId::new().as_str())).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT", "another viewer's token: the same cached copy");
    assert_eq!(r.bytes().await.unwrap(), want);
    let r = http.get(format!("{seg}?token={a}")).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!((r.status(), r.headers()["x-cache"].to_str().unwrap()), (StatusCode::PARTIAL_CONTENT, "HIT"));

    // Every bad token is refused from the cached copy, without asking the origin, counted by reason.
    let fetches = metric(&edge.url(), "edge_origin_fetches_total").await;
    let cases = [
        ("missing", String::new()),
        ("expired", token(c.video, Duration::ZERO)),
        ("other_video", token(public, HOUR)),
        ("bad_signature", signer(FORGED_KEYS).sign(c.video, HOUR)),
        ("unknown_key", signer(UNKNOWN_KEYS).sign(c.video, HOUR)),
        ("malformed", "not-a-token".to_owned()),
    ];
    for (reason, bad) in &cases {
        let before = refusals(&edge.url(), EDGE_REFUSALS, reason).await;
        let r = http.get(format!("{seg}?token={bad}")).send().await.unwrap();
        assert_eq!(r.headers()["x-cache"], "HIT", "{reason}");
        assert_refused(r, reason).await;
        assert_eq!(refusals(&edge.url(), EDGE_REFUSALS, reason).await, before + 1.0, "{reason}");
        // A conditional or ranged request gets nothing either.
        let r = http.get(format!("{seg}?token={bad}")).header("range", "bytes=0-99").header("if-none-match", "\"x\"").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{reason}");
    }
    assert_eq!(metric(&edge.url(), "edge_origin_fetches_total").await, fetches);

    // A refused miss is not cached: the next valid viewer fetches it.
    let cold = format!("{}{}", edge.url(), c.path("720p/seg_00000.m4s"));
    assert_refused(http.get(format!("{cold}?token={}", token(c.video, Duration::ZERO))).send().await.unwrap(), "expired").await;
    let r = http.get(format!("{cold}?token={a}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // MISS, or PASS if it joined the refused fetch before it ended.
    assert!(matches!(r.headers()["x-cache"].to_str().unwrap(), "MISS" | "PASS"), "{:?}", r.headers());
    assert_eq!(r.bytes().await.unwrap(), object("720p/seg_00000.m4s"));

    // The origin checks alike.
    let direct = format!("{}{}", origin.url(), c.path("720p/seg_00001.m4s"));
    assert_refused(http.get(&direct).send().await.unwrap(), "missing").await;
    assert_refused(http.get(format!("{direct}?token={}", token(public, HOUR))).send().await.unwrap(), "other_video").await;
    let r = http.get(format!("{direct}?token={a}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-playback-access"], "signed");

    // A public video plays as before: no token, no mark, public caching.
    let p = format!("{}/hls/{public}/720p/seg_00001.m4s", edge.url());
    for outcome in ["MISS", "HIT"] {
        let r = http.get(&p).send().await.unwrap();
        assert_eq!((r.status(), r.headers()["x-cache"].to_str().unwrap()), (StatusCode::OK, outcome));
        assert!(r.headers().get("x-playback-access").is_none());
        assert!(r.headers()["cache-control"].to_str().unwrap().starts_with("public"));
        assert_eq!(r.bytes().await.unwrap(), want);
    }
}

#[tokio::test]
async fn a_viewer_without_a_valid_token_gets_nothing_from_a_flight_it_joins() {
    let c = Catalogue::with(&protected_files()).await;
    c.protect(c.video, "private", Uuid::new_v4()).await;
    let origin = origin(&c.world, &[]).await;
    let gate = Gate::new(&origin.url(), client()).await;
    let edge = edge(&c.world, &gate.url, &[]).await;
    let seg = format!("{}{}", edge.url(), c.path("720p/seg_00000.m4s"));
    let a = token(c.video, HOUR);

    // A viewer with a token starts the fetch; one without joins it.
    gate.hold();
    let viewer = tokio::spawn({
        let url = format!("{seg}?token={a}");
        async move { client().get(url).send().await.unwrap() }
    });
    eventually(Duration::from_secs(10), "the viewer's fetch reaches the origin", || async { gate.held.load(std::sync::atomic::Ordering::SeqCst) == 1 }).await;
    let thieves: Vec<_> = ["", "?token=forged"].into_iter().map(|q| tokio::spawn({
        let url = format!("{seg}{q}");
        async move { client().get(url).send().await.unwrap() }
    })).collect();
    // The thieves only ask an idle edge on loopback; one that came after the
    // gate opened would be refused from the cache and still pass, so this
    // wait is for coverage, not correctness.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.release();
    let r = viewer.await.unwrap();
    assert_eq!((r.status(), r.headers()["x-cache"].to_str().unwrap()), (StatusCode::OK, "MISS"));
    assert_eq!(r.bytes().await.unwrap(), object("720p/seg_00000.m4s"));
    for (t, reason) in thieves.into_iter().zip(["missing", "malformed"]) {
        let r = t.await.unwrap();
        assert_eq!(r.headers()["x-cache"], "HIT", "joined (or, if late, the cache)");
        assert_refused(r, reason).await;
    }
    assert_eq!(gate.held.load(std::sync::atomic::Ordering::SeqCst), 1, "one origin fetch");

    // The other way round: a fetch started without a token is refused by the
    // origin; a viewer with one that joined it asks for itself and plays.
    let seg = format!("{}{}", edge.url(), c.path("360p/seg_00000.m4s"));
    gate.hold();
    let thief = tokio::spawn({
        let url = seg.clone();
        async move { client().get(url).send().await.unwrap() }
    });
    eventually(Duration::from_secs(10), "the thief's fetch reaches the origin", || async { gate.held.load(std::sync::atomic::Ordering::SeqCst) == 1 }).await;
    let viewer = tokio::spawn({
        let url = format!("{seg}?token={a}");
        async move { client().get(url).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.release();
    assert_refused(thief.await.unwrap(), "missing").await;
    let r = viewer.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), object("360p/seg_00000.m4s"));
}

#[tokio::test]
async fn playlists_carry_the_token_onto_every_uri_and_the_key_is_handed_out_but_never_cached() {
    let Setup { c, key, edge, origin: _origin, .. } = setup(None).await;
    let http = client();
    let (a, b) = (token(c.video, HOUR), token(c.video, 2 * HOUR));
    let sid = SessionId::new();
    let media = format!("{}{}", edge.url(), c.path("720p/index.m3u8"));

    let r = http.get(format!("{media}?sid={}&token={a}", sid.as_str())).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    let text = r.text().await.unwrap();
    let q = format!("?sid={}&token={a}", sid.as_str());
    assert!(text.contains(&format!("#EXT-X-MAP:URI=\"init_0.mp4{q}\"")), "{text}");
    assert!(text.contains(&format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{KEY_URI}{q}\"")), "{text}");
    let segments: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(segments.len(), 40);
    assert!(segments.iter().all(|s| s.ends_with(&q)), "{text}");
    // A token without a session id, from the cached copy: the stored
    // playlist, tagged for this viewer only.
    let r = http.get(format!("{media}?token={b}")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let text = r.text().await.unwrap();
    assert!(text.contains(&format!("URI=\"{KEY_URI}?token={b}\"")) && text.contains(&format!("\nseg_00000.m4s?token={b}\n")), "{text}");
    assert!(!text.contains(&a) && !text.contains("sid="), "{text}");
    assert_refused(http.get(&media).send().await.unwrap(), "missing").await;

    // The master's URIs carry it too, so the player asks for media playlists with it.
    let master = http.get(format!("{}{}?token={a}", edge.url(), c.path("master.m3u8"))).send().await.unwrap();
    assert_eq!(master.status(), 200);
    let text = master.text().await.unwrap();
    assert!(text.contains("720p/index.m3u8?sid=") && text.lines().filter(|l| l.contains(".m3u8")).all(|l| l.contains(&format!("token={a}"))), "{text}");
    assert_refused(http.get(format!("{}{}", edge.url(), c.path("master.m3u8"))).send().await.unwrap(), "missing").await;

    // The key: 16 bytes with a token, private and never stored, whoever asks.
    let key_url = format!("{}{}", edge.url(), c.path("content.key"));
    for t in [&a, &b, &a] {
        let r = http.get(format!("{key_url}?sid={}&token={t}", sid.as_str())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.headers()["cache-control"], "private, no-store");
        assert_eq!(r.headers()["x-cache"], "PASS");
        assert_eq!(r.bytes().await.unwrap().as_ref(), key);
    }
    assert_refused(http.get(&key_url).send().await.unwrap(), "missing").await;
    assert_refused(http.get(format!("{key_url}?token={}", token(c.video, Duration::ZERO))).send().await.unwrap(), "expired").await;
}

#[tokio::test]
async fn a_child_edge_checks_tokens_caches_the_shared_copy_and_forwards_the_token_to_its_parent() {
    let Setup { c, edge: parent, origin: _origin, .. } = setup(None).await;
    let child = edge(&c.world, &parent.url(), &[]).await;
    let http = client();
    let a = token(c.video, HOUR);
    let seg = format!("{}{}", child.url(), c.path("720p/seg_00001.m4s"));
    for outcome in ["MISS", "HIT"] {
        let r = http.get(format!("{seg}?token={a}")).send().await.unwrap();
        assert_eq!((r.status(), r.headers()["x-cache"].to_str().unwrap()), (StatusCode::OK, outcome));
        assert_eq!(r.bytes().await.unwrap(), object("720p/seg_00001.m4s"));
    }
    assert_refused(http.get(&seg).send().await.unwrap(), "missing").await;
    // The child's playlist is the stored one tagged once, and cached at the child.
    let media = format!("{}{}", child.url(), c.path("720p/index.m3u8"));
    for outcome in ["MISS", "HIT"] {
        let r = http.get(format!("{media}?token={a}")).send().await.unwrap();
        assert_eq!(r.headers()["x-cache"], outcome);
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!("\nseg_00000.m4s?token={a}\n")), "{text}");
        assert_eq!(text.matches("token=").count(), 42, "40 segments, the init segment and the key, once each: {text}");
    }
}

#[tokio::test]
async fn the_play_api_signs_a_private_video_for_its_owner_and_admins_only() {
    let c = Catalogue::with(&protected_files()).await;
    let (owner_key, owner) = c.world.api_key(Role::Creator).await;
    let (other_key, _) = c.world.api_key(Role::Creator).await;
    let (admin_key, _) = c.world.api_key(Role::Admin).await;
    c.protect(c.video, "private", owner).await;
    let unlisted = Catalogue::add(&c.world, &protected_files()).await;
    c.protect(unlisted, "unlisted", owner).await;
    let public = Catalogue::add(&c.world, &ladder()).await;
    let origin = origin(&c.world, &[]).await;
    let edge = edge(&c.world, &origin.url(), &[]).await;
    let as_key = |k: &shared::auth::ApiKey| reqwest::Client::builder().default_headers(shared::testing::bearer(k)).build().unwrap();
    let play = |video: Uuid| format!("{}/api/v1/videos/{video}/play", origin.url());

    // Anyone but the owner and admins: the 404 of a video that does not exist.
    let missing = client().get(play(Uuid::new_v4())).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    for http in [client(), as_key(&other_key)] {
        let r = http.get(play(c.video)).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap(), missing);
    }
    let r = client().get(play(c.video)).header("authorization", "Bearer vpk_nonsense").send().await.unwrap();
    assert_eq!(r.status(), 401, "a malformed key is refused as such");

    // The owner and an admin get a signed URL that the edge plays.
    for http in [as_key(&owner_key), as_key(&admin_key)] {
        let answer: Value = http.get(play(c.video)).send().await.unwrap().json().await.unwrap();
        let url = answer["url"].as_str().unwrap();
        assert!(url.contains("token=") && url.contains("sid="), "{answer}");
        let expires = time::OffsetDateTime::parse(answer["expires_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        let ttl = expires - time::OffsetDateTime::now_utc();
        assert!(ttl > time::Duration::hours(5) && ttl <= time::Duration::hours(6), "PLAYBACK_TOKEN_TTL is 6h by default: {answer}");
        assert_eq!(answer["visibility"], "private");
        let master = client().get(format!("{}{url}", edge.url())).send().await.unwrap();
        assert_eq!(master.status(), 200);
        let master = master.text().await.unwrap();
        let rendition = master.lines().find(|l| l.starts_with("720p/")).unwrap().to_owned();
        let media = client().get(format!("{}{}", edge.url(), c.path(&rendition))).send().await.unwrap();
        assert_eq!(media.status(), 200, "{rendition}");
        let media = media.text().await.unwrap();
        let segment = media.lines().find(|l| l.starts_with("seg_00001.m4s")).unwrap();
        let r = client().get(format!("{}{}", edge.url(), c.path(&format!("720p/{segment}")))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{segment}");
        assert_eq!(r.bytes().await.unwrap(), object("720p/seg_00001.m4s"));
    }

    // Unlisted: anyone with the link gets a signed URL; public: a plain one.
    let answer: Value = client().get(play(unlisted)).send().await.unwrap().json().await.unwrap();
    assert!(answer["url"].as_str().unwrap().contains("token=") && answer["expires_at"].is_string(), "{answer}");
    let answer: Value = client().get(play(public)).send().await.unwrap().json().await.unwrap();
    assert!(!answer["url"].as_str().unwrap().contains("token=") && answer["expires_at"].is_null(), "{answer}");

    // Viewer counts: a private video's are its owner's; the overview is the admins'.
    let counts = |video: Uuid| format!("{}/api/v1/videos/{video}/viewers", origin.url());
    assert_eq!(client().get(counts(c.video)).send().await.unwrap().status(), 404);
    assert_eq!(as_key(&other_key).get(counts(c.video)).send().await.unwrap().status(), 404);
    assert_eq!(as_key(&owner_key).get(counts(c.video)).send().await.unwrap().status(), 200);
    assert_eq!(client().get(counts(unlisted)).send().await.unwrap().status(), 200);
    let overview = format!("{}/api/v1/viewers", origin.url());
    assert_eq!(client().get(&overview).send().await.unwrap().status(), 401);
    assert_eq!(as_key(&owner_key).get(&overview).send().await.unwrap().status(), 403);
    assert_eq!(as_key(&admin_key).get(&overview).send().await.unwrap().status(), 200);
}
