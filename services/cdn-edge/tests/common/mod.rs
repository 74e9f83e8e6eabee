//! A delivery tier in one test process: a real origin (`streaming`) and
//! real edges on loopback ports, over an isolated world (its own database,
//! bucket and Redis prefix), serving a ready video whose objects the test
//! wrote itself, so every byte a response carries is known.

#![allow(dead_code)]

pub mod gate;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use shared::configuration::Env;
use shared::testing::World;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const PURGE_TOKEN: &str = "test-purge-token-0123456789";

/// The origin's playback signing key (kid `test`, an Ed25519 seed of 7s).
pub const SIGNING_KEYS: &str = "test:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc";
/// Another seed under the same kid: what a forger without the key signs with.
pub const FORGED_KEYS: &str = "test:CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg";
/// A key id no edge knows.
pub const UNKNOWN_KEYS: &str = "gone:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc";
/// The content keys' master key.
pub const MASTER_KEYS: &str = "m1:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk";

pub fn signer(keys: &str) -> shared::playback::Signer {
    keys.parse().expect("test signing keys")
}

/// A token for `video` from the origin's key, valid for `ttl`.
pub fn token(video: Uuid, ttl: Duration) -> String {
    signer(SIGNING_KEYS).sign(video, ttl)
}

pub const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Main\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"audio\"\n720p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"audio\"\n360p/index.m3u8\n";

pub fn media_playlist() -> String {
    let mut p = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init_0.mp4\"\n");
    for i in 0..40 {
        p.push_str(&format!("#EXTINF:6.000000,\nseg_{i:05}.m4s\n"));
    }
    p.push_str("#EXT-X-ENDLIST\n");
    p
}

/// Incompressible bytes, different for each seed.
pub fn noise(len: usize, seed: u64) -> Bytes {
    shared::testing::noise(len, seed).into()
}

/// The video's objects: name → bytes.
pub fn ladder() -> Vec<(&'static str, Bytes)> {
    vec![
        ("master.m3u8", Bytes::from_static(MASTER.as_bytes())),
        ("720p/index.m3u8", Bytes::from(media_playlist())),
        ("360p/index.m3u8", Bytes::from(media_playlist())),
        ("audio/index.m3u8", Bytes::from(media_playlist())),
        ("720p/init_0.mp4", noise(1500, 1)),
        ("720p/seg_00000.m4s", noise(1 << 20, 2)),
        ("720p/seg_00001.m4s", noise(300_000, 3)),
        ("360p/seg_00000.m4s", noise(200_000, 4)),
        ("thumbnails.vtt", Bytes::from_static(b"WEBVTT\n\n00:00.000 --> 00:01.000\nsprite_000.jpg#xywh=0,0,160,90\n")),
        ("manifest.mpd", Bytes::from_static(b"<?xml version=\"1.0\"?><MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"></MPD>")),
        ("poster.jpg", noise(5000, 5)),
    ]
}

/// One running service; stopped (gracefully) when dropped or by `stop`.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn run(server: shared::server::Server) -> Running {
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = server.run_until_stopped(async move { let _ = rx.await; }).await;
    });
    Running { addr, stop: Some(tx), task: Some(task) }
}

/// Settings read from the world's variables plus `overrides`, as a process would read its environment.
fn env(world: &World, overrides: &[(&str, String)]) -> Env {
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.env_with(&overrides)
}

pub async fn origin(world: &World, overrides: &[(&str, String)]) -> Running {
    let mut all = vec![("PLAYBACK_SIGNING_KEYS", SIGNING_KEYS.to_owned()), ("CONTENT_MASTER_KEYS", MASTER_KEYS.to_owned())];
    all.extend(overrides.iter().cloned());
    let mut e = env(world, &all);
    let settings = streaming::configuration::Settings::from_env(&mut e);
    e.finish().expect("origin settings");
    run(streaming::startup::build(settings).await.expect("origin starts"))
}

pub async fn edge(world: &World, parent: &str, overrides: &[(&str, String)]) -> Running {
    let mut all = vec![("ORIGIN_URL", parent.to_owned()), ("PURGE_TOKEN", PURGE_TOKEN.to_owned()), ("PLAYBACK_PUBLIC_KEYS", signer(SIGNING_KEYS).public_keys())];
    all.extend(overrides.iter().cloned());
    let mut e = env(world, &all);
    let settings = cdn_edge::configuration::Settings::from_env(&mut e);
    e.finish().expect("edge settings");
    run(cdn_edge::startup::build(settings).await.expect("edge starts"))
}

/// A world holding one ready video made of [`ladder`].
pub struct Catalogue {
    pub world: World,
    pub video: Uuid,
}

impl Catalogue {
    pub async fn new() -> Self {
        Self::with(&ladder()).await
    }

    /// A world holding one ready video made of `files`.
    pub async fn with(files: &[(&str, Bytes)]) -> Self {
        let world = World::new().await;
        let storage = world.backends.s3.store();
        storage.ensure_bucket().await.expect("bucket");
        let video = Self::add(&world, files).await;
        Self { world, video }
    }

    /// Another ready video of `files` in the same world.
    pub async fn add(world: &World, files: &[(&str, Bytes)]) -> Uuid {
        let pool = world.backends.database.pool().expect("pool");
        let videos = shared::videos::Videos::new(pool.clone());
        shared::testing::ready_video(&world.backends.s3.store(), &videos, &pool, files).await.expect("ready video")
    }

    /// Makes `video` private (or unlisted), owned by `owner`, encrypted with
    /// a content key of its own (returned), as a protected upload would be.
    pub async fn protect(&self, video: Uuid, visibility: &str, owner: Uuid) -> [u8; 16] {
        let pool = self.world.backends.database.pool().expect("pool");
        sqlx::query("UPDATE videos SET visibility = $2, owner_id = $3, encrypted = true WHERE id = $1")
            .bind(video)
            .bind(visibility)
            .bind(owner)
            .execute(&pool)
            .await
            .expect("protect the video");
        shared::playback::ContentKeys::new(pool, MASTER_KEYS.parse().unwrap()).get_or_create(video).await.expect("content key")
    }

    pub fn path(&self, object: &str) -> String {
        format!("/hls/{}/{object}", self.video)
    }
}

/// A client sending a new admin key of the catalogue's world.
pub async fn admin_client(c: &Catalogue) -> reqwest::Client {
    let (key, _) = c.world.api_key(shared::auth::Role::Admin).await;
    reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).timeout(Duration::from_secs(60)).build().unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(512).timeout(Duration::from_secs(60)).build().unwrap()
}

/// A counter's value on a /metrics page, summed over label sets.
pub async fn metric(base: &str, name: &str) -> f64 {
    shared::testing::metric(&client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap(), name)
}

#[allow(unused_imports)] // not every test binary polls
pub use shared::testing::eventually;

/// A server that answers exactly one request: `head` (status line, headers
/// and the first bytes) at once, `rest` when the returned sender fires; then
/// it holds the connection open. A second request would hang: a test that
/// makes one sees it. Its URL and the release.
pub async fn one_answer_held_back(head: &'static str, rest: &'static [u8]) -> (String, oneshot::Sender<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (release_tx, release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await.unwrap();
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.flush().await.unwrap();
        let _ = release_rx.await;
        sock.write_all(rest).await.unwrap();
        sock.flush().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    (url, release_tx)
}
