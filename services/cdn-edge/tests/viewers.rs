//! Viewer sessions, the bitrate cap and content steering, on a real origin
//! and edge with Redis: simulated viewers are HTTP clients that fetch a
//! master playlist and then its media with their session id, exactly as a
//! player does; stopping them lets their sessions lapse.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A simulated viewer: fetches the master through `base`, then its media.
struct Viewer {
    sid: String,
    master: String,
}

async fn join(base: &str, c: &Catalogue, region: &str) -> Viewer {
    let r = client().get(format!("{base}{}?region={region}", c.path("master.m3u8"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let sid = r.headers()["x-session-id"].to_str().unwrap().to_owned();
    Viewer { sid, master: r.text().await.unwrap() }
}

impl Viewer {
    /// One media fetch with the session id: a keep-alive.
    async fn fetch(&self, base: &str, c: &Catalogue) {
        let r = client().get(format!("{base}{}?sid={}", c.path("360p/seg_00000.m4s"), self.sid)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

async fn json(url: String) -> Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

const TTL: &str = "2s";

#[tokio::test]
async fn sessions_come_with_the_master_ride_on_every_uri_and_counts_rise_and_fall() {
    let c = Catalogue::new().await;
    let origin = origin(&c.world, &[("VIEWER_SESSION_TTL", TTL.into())]).await;
    let edge = edge(&c.world, &origin.url(), &[("VIEWER_SESSION_TTL", TTL.into()), ("EDGE_NODE", "edge-a".into())]).await;
    let edge_url = edge.url();
    let viewers: Vec<Viewer> = futures::future::join_all((0..5).map(|_| join(&edge_url, &c, "eu"))).await;
    let v = &viewers[0];
    assert!(v.master.contains(&format!("\n720p/index.m3u8?sid={}\n", v.sid)), "{}", v.master);
    assert!(v.master.contains(&format!("URI=\"audio/index.m3u8?sid={}\"", v.sid)));
    // The media playlist, through the edge, carries the id on every segment.
    let media = client().get(format!("{}{}?sid={}", edge.url(), c.path("720p/index.m3u8"), v.sid)).send().await.unwrap().text().await.unwrap();
    assert!(media.contains(&format!("#EXT-X-MAP:URI=\"init_0.mp4?sid={}\"", v.sid)));
    assert_eq!(media.matches(&format!(".m4s?sid={}\n", v.sid)).count(), 40);
    // Same master again with the id: same session, no new view.
    let again = client().get(format!("{}{}?sid={}", edge.url(), c.path("master.m3u8"), v.sid)).send().await.unwrap();
    assert_eq!(again.headers()["x-session-id"], v.sid.as_str());

    for v in &viewers {
        v.fetch(&edge.url(), &c).await;
    }
    let counts = format!("{}/api/v1/videos/{}/viewers", origin.url(), c.video);
    let mut sid_keepalive = 0;
    eventually(Duration::from_secs(5), "five live viewers", || {
        let counts = counts.clone();
        async move { json(counts).await["live"] == 5 }
    })
    .await;
    assert_eq!(json(counts.clone()).await["views"], 5, "five sessions issued");
    // The platform overview is an operator surface: an admin key.
    let admin = admin_client(&c).await;
    eventually(Duration::from_secs(5), "five live on the edge node", || async {
        admin.get(format!("{}/api/v1/viewers", origin.url())).send().await.unwrap().json::<Value>().await.unwrap()["by_node"]["edge-a"] == 5
    })
    .await;
    eventually(Duration::from_secs(5), "the edge's own gauge", || async { metric(&edge.url(), "edge_viewers_live").await == 5.0 }).await;

    // Two keep watching, three stop: the count falls to two, then to none.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        viewers[0].fetch(&edge.url(), &c).await;
        viewers[1].fetch(&edge.url(), &c).await;
        sid_keepalive += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(sid_keepalive > 5);
    assert_eq!(json(counts.clone()).await["live"], 2);
    eventually(Duration::from_secs(6), "no live viewers once all stop", || {
        let counts = counts.clone();
        async move { json(counts).await["live"] == 0 }
    })
    .await;
    let r = client().get(format!("{}/api/v1/videos/not-an-id/viewers", origin.url())).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_bitrate_cap_engages_above_its_threshold_and_releases_below() {
    let c = Catalogue::new().await;
    let cap = [
        ("VIEWER_SESSION_TTL", TTL.into()),
        ("BITRATE_CAP_VIEWERS_ABOVE", "3".into()),
        ("BITRATE_CAP_VIEWERS_BELOW", "2".into()),
        ("BITRATE_CAP_INTERVAL", "200ms".into()),
    ];
    let origin = origin(&c.world, &cap).await;
    let first = join(&origin.url(), &c, "eu").await;
    assert!(first.master.contains("720p/index.m3u8"), "uncapped: every rung");
    let origin_url = origin.url();
    let crowd: Vec<Viewer> = futures::future::join_all((0..3).map(|_| join(&origin_url, &c, "eu"))).await;
    eventually(Duration::from_secs(5), "cap engaged", || async { metric(&origin.url(), "origin_bitrate_cap_active").await == 1.0 }).await;
    let r = client().get(format!("{}{}", origin.url(), c.path("master.m3u8"))).send().await.unwrap();
    assert_eq!(r.headers()["x-bitrate-cap"], "720p");
    let capped = r.text().await.unwrap();
    assert!(!capped.contains("720p/") && capped.contains("360p/index.m3u8"), "{capped}");
    assert!(metric(&origin.url(), "origin_capped_sessions_total").await >= 1.0);
    // An existing session keeps what it was issued.
    let again = client().get(format!("{}{}?sid={}", origin.url(), c.path("master.m3u8"), first.sid)).send().await.unwrap();
    assert_eq!(again.headers()["x-bitrate-cap"], "none");
    drop(crowd);
    // Everyone stops; the sessions lapse, the count falls under 2, the cap lifts.
    eventually(Duration::from_secs(8), "cap released", || async { metric(&origin.url(), "origin_bitrate_cap_active").await == 0.0 }).await;
    let r = client().get(format!("{}{}", origin.url(), c.path("master.m3u8"))).send().await.unwrap();
    assert_eq!(r.headers()["x-bitrate-cap"], "none");
    assert!(r.text().await.unwrap().contains("720p/index.m3u8"));
}

#[tokio::test]
async fn steering_moves_sessions_to_the_secondary_above_the_threshold_and_back_below_it() {
    let c = Catalogue::new().await;
    // Two pathways: the primary edge, and a secondary edge that pulls from it.
    let placeholder = origin(&c.world, &[]).await;
    let primary = edge(&c.world, &placeholder.url(), &[("VIEWER_SESSION_TTL", TTL.into()), ("EDGE_NODE", "primary".into())]).await;
    let secondary = edge(&c.world, &primary.url(), &[("VIEWER_SESSION_TTL", TTL.into()), ("EDGE_NODE", "secondary".into())]).await;
    let steering = [
        ("VIEWER_SESSION_TTL", TTL.into()),
        ("STEERING_PATHWAYS", format!("primary={},secondary={}", primary.url(), secondary.url())),
        ("STEERING_ACTIVATE_ABOVE", "3".into()),
        ("STEERING_RELEASE_BELOW", "2".into()),
        ("STEERING_TTL", "1s".into()),
        ("VIEWER_REGIONS", "eu,us".into()),
    ];
    let origin = origin(&c.world, &steering).await;
    let me = join(&origin.url(), &c, "eu").await;
    assert!(me.master.contains(&format!("#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steering/{}?sid={}\",PATHWAY-ID=\"primary\"", c.video, me.sid)), "{}", me.master);
    assert!(me.master.contains(&format!("PATHWAY-ID=\"secondary\"\n{}{}?sid={}", secondary.url(), c.path("720p/index.m3u8"), me.sid)), "{}", me.master);
    let steer = || async { json(format!("{}/steering/{}?sid={}&_HLS_pathway=primary", origin.url(), c.video, me.sid)).await };
    let answer = steer().await;
    assert_eq!(answer["VERSION"], 1);
    assert_eq!(answer["TTL"], 1);
    assert_eq!(answer["PATHWAY-PRIORITY"], serde_json::json!(["primary", "secondary"]), "one viewer: primary");

    // A crowd in the same region (and one elsewhere, which does not count).
    let origin_url = origin.url();
    let crowd: Vec<Viewer> = futures::future::join_all((0..4).map(|_| join(&origin_url, &c, "eu"))).await;
    let elsewhere = join(&origin.url(), &c, "us").await;
    for v in crowd.iter().chain([&me, &elsewhere]) {
        v.fetch(&primary.url(), &c).await;
    }
    let answer = steer().await;
    assert_eq!(answer["PATHWAY-PRIORITY"], serde_json::json!(["secondary", "primary"]), "five in eu > 3: moved to the secondary");
    assert_eq!(metric(&origin.url(), "steering_secondary_active").await, 1.0);
    let play = json(format!("{}/api/v1/videos/{}/play?region=us", origin.url(), c.video)).await;
    assert_eq!(play["pathway"], "primary", "another region is not affected: {play}");
    assert!(play["url"].as_str().unwrap().starts_with(&primary.url()));
    // The play URL is a master for one pathway, with no steering tag.
    let pinned = client().get(play["url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    assert!(!pinned.contains("CONTENT-STEERING") && !pinned.contains(&secondary.url()), "{pinned}");
    // The secondary really serves, pulling through the primary.
    let r = client().get(format!("{}{}?sid={}", secondary.url(), c.path("360p/seg_00000.m4s"), me.sid)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The crowd leaves; only I keep watching. Below 2 the secondary drains.
    drop(crowd);
    eventually(Duration::from_secs(10), "steered back to the primary", || async {
        me.fetch(&secondary.url(), &c).await;
        steer().await["PATHWAY-PRIORITY"][0] == "primary"
    })
    .await;
    assert_eq!(metric(&origin.url(), "steering_secondary_active").await, 0.0);
    let r = client().get(format!("{}/steering/{}", origin.url(), "nope")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}
