//! Test harness: live-ingest spawned in-process on port 0 (HTTP and RTMP)
//! in its own world (fresh database, bucket, queue and Redis prefixes)
//! against the real services, with a small ladder so ffmpeg stays cheap;
//! a creator's key; and an RTMP publisher written with `rml_rtmp`'s client
//! session, so tests choose exactly what a publisher sends: metadata or
//! none, timestamps that jump, silence with the socket open.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use live_ingest::configuration::Settings;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType, StreamMetadata};
use rml_rtmp::time::RtmpTimestamp;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::testing::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TestApp {
    pub base: String,
    pub rtmp: SocketAddr,
    pub world: World,
    pub client: reqwest::Client,
}

/// A live stream as the API created it.
pub struct Stream {
    pub id: String,
    pub key: String,
    pub playback: String,
}

/// Two cheap rungs, short idle and grace periods, the fastest x264 preset.
pub async fn spawn_app(overrides: &[(&str, &str)]) -> TestApp {
    let world = World::new().await;
    let mut vars = vec![
        ("RTMP_ADDR", "127.0.0.1:0"),
        ("LIVE_LADDER", "240p:240:300,144p:144:150"),
        ("LIVE_X264_PRESET", "ultrafast"),
        ("LIVE_IDLE_TIMEOUT", "2s"),
        ("LIVE_GRACE", "2s"),
    ];
    vars.extend_from_slice(overrides);
    let work = std::env::temp_dir().join(format!("live-ingest-test-{}", world.id));
    let work = work.to_str().unwrap().to_owned();
    vars.push(("WORK_DIR", &work));
    let mut env = world.env_with(&vars);
    let settings = Settings::from_env(&mut env);
    env.finish().expect("test settings are valid");
    let (server, rtmp) = live_ingest::startup::build_app(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", server.port());
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let (key, _) = world.api_key(Role::Creator).await;
    let client = reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).build().unwrap();
    TestApp { base, rtmp, world, client }
}

impl TestApp {
    pub async fn create_stream(&self) -> Stream {
        let res = self.client.post(format!("{}/api/v1/live", self.base)).json(&json!({"title": "hostile"})).send().await.unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        Stream { id: s("id"), key: s("stream_key"), playback: s("playback_id") }
    }

    pub async fn stream(&self, id: &str) -> Value {
        self.client.get(format!("{}/api/v1/live/{id}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap()
    }

    /// `live_publish_refusals_total{reason}`.
    pub async fn refusals(&self, reason: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with("live_publish_refusals_total") && l.contains(&format!("reason=\"{reason}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// GET under `/live/`: status and body.
    pub async fn live(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("{}/live/{path}", self.base)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The live master, once it is there (within `within`).
    pub async fn master(&self, s: &Stream, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (status, text) = self.live(&format!("{}/master.m3u8", s.playback)).await;
            if status == 200 {
                return text;
            }
            assert!(Instant::now() < deadline, "no live master within {within:?}: {status} {text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl TestApp {
    /// The path (under `/live/`) of rendition `rung`'s media playlist, from the master once it is there.
    pub async fn media_path(&self, s: &Stream, rung: &str) -> String {
        let master = self.master(s, Duration::from_secs(20)).await;
        let variant = master.lines().find(|l| l.contains(&format!("/{rung}/"))).unwrap_or_else(|| panic!("no {rung} variant:\n{master}"));
        format!("{}/{}", s.playback, variant.split('?').next().unwrap())
    }
}

/// One FLV tag of a generated source.
#[derive(Clone)]
pub struct SourceTag {
    pub video: bool,
    pub ts: u32,
    pub body: Bytes,
}

impl SourceTag {
    pub fn is_header(&self) -> bool {
        self.body.len() >= 2 && self.body[1] == 0
    }
}

/// `secs` of a lavfi test pattern (`size` at `fps`, a key frame every
/// second) with a tone, encoded by ffmpeg as an RTMP encoder would (x264,
/// AAC) into FLV, read back as tags.
pub fn source(size: &str, fps: u32, secs: u32) -> Vec<SourceTag> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.flv");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate={fps}:duration={secs}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={secs}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", &fps.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the source");
    parse_flv(&std::fs::read(&path).unwrap())
}

fn parse_flv(b: &[u8]) -> Vec<SourceTag> {
    let mut at = u32::from_be_bytes(b[5..9].try_into().unwrap()) as usize + 4;
    let mut tags = Vec::new();
    while at + 11 <= b.len() {
        let kind = b[at];
        let size = u32::from_be_bytes([0, b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let ts = u32::from_be_bytes([b[at + 7], b[at + 4], b[at + 5], b[at + 6]]);
        let body = Bytes::copy_from_slice(&b[at + 11..at + 11 + size]);
        if kind == 8 || kind == 9 {
            tags.push(SourceTag { video: kind == 9, ts, body });
        }
        at += 11 + size + 4;
    }
    tags
}

/// A publisher on one RTMP connection.
pub struct Publisher {
    socket: TcpStream,
    session: ClientSession,
}

impl Publisher {
    /// Handshake, connect to app `live`, publish `key`. An error: what the server answered instead.
    pub async fn connect(addr: SocketAddr, key: &str) -> Result<Self, String> {
        let mut socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut hs = Handshake::new(PeerType::Client);
        socket.write_all(&hs.generate_outbound_p0_and_p1().unwrap()).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let rest = loop {
            let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            match hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await.unwrap(),
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    socket.write_all(&response_bytes).await.unwrap();
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut p = Self { socket, session };
        p.handle(results).await?;
        if !rest.is_empty() {
            let r = p.session.handle_input(&rest).map_err(|e| format!("{e:?}"))?;
            p.handle(r).await?;
        }
        let r = p.session.request_connection("live".into()).unwrap();
        p.handle(vec![r]).await?;
        p.until(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted)).await?;
        let r = p.session.request_publishing(key.into(), PublishRequestType::Live).unwrap();
        p.handle(vec![r]).await?;
        p.until(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted)).await?;
        Ok(p)
    }

    async fn handle(&mut self, results: Vec<ClientSessionResult>) -> Result<(), String> {
        for r in results {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.socket.write_all(&p.bytes).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Reads until an event matches; an error on a rejection, a close or 10 s.
    async fn until(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match tokio::time::timeout_at(deadline, self.socket.read(&mut buf)).await {
                Err(_) => return Err("no answer within 10 s".into()),
                Ok(Ok(0)) => return Err("closed by the server".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e.to_string()),
            };
            let results = self.session.handle_input(&buf[..n]).map_err(|e| format!("{e:?}"))?;
            let mut hit = false;
            for r in &results {
                if let ClientSessionResult::RaisedEvent(e) = r {
                    if let ClientSessionEvent::ConnectionRequestRejected { description } = e {
                        return Err(format!("rejected: {description}"));
                    }
                    if let ClientSessionEvent::UnhandleableOnStatusCode { code } = e {
                        return Err(format!("status {code}"));
                    }
                    hit |= want(e);
                }
            }
            self.handle(results).await?;
            if hit {
                return Ok(());
            }
        }
    }

    pub async fn metadata(&mut self, width: u32, height: u32, fps: f32) -> Result<(), String> {
        let mut m = StreamMetadata::new();
        (m.video_width, m.video_height, m.video_frame_rate, m.video_codec_id, m.audio_codec_id) = (Some(width), Some(height), Some(fps), Some(7), Some(10));
        let r = self.session.publish_metadata(&m).map_err(|e| format!("{e:?}"))?;
        self.handle(vec![r]).await
    }

    /// Sends one tag with timestamp `ts`. An error: the server closed the connection.
    pub async fn send(&mut self, tag: &SourceTag, ts: u32) -> Result<(), String> {
        let t = RtmpTimestamp::new(ts);
        let r = if tag.video {
            self.session.publish_video_data(tag.body.clone(), t, false)
        } else {
            self.session.publish_audio_data(tag.body.clone(), t, false)
        }
        .map_err(|e| format!("{e:?}"))?;
        self.handle(vec![r]).await
    }

    /// Sends `tags` in real time (paced by their own timestamps), each
    /// stamped `ts + offset`. Stops early, with an error, if the server closes.
    pub async fn play(&mut self, tags: &[SourceTag], offset: i64) -> Result<(), String> {
        let start = tokio::time::Instant::now();
        let first = tags.first().map_or(0, |t| t.ts);
        for t in tags {
            tokio::time::sleep_until(start + Duration::from_millis(u64::from(t.ts - first))).await;
            self.send(t, (i64::from(t.ts) + offset) as u32).await?;
            self.check_open().await?;
        }
        Ok(())
    }

    /// Whether the server has closed the connection (reads what it sent meanwhile).
    pub async fn check_open(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; 8192];
        loop {
            match tokio::time::timeout(Duration::from_millis(1), self.socket.read(&mut buf)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => return Err("closed by the server".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(n)) => {
                    let results = self.session.handle_input(&buf[..n]).map_err(|e| format!("{e:?}"))?;
                    self.handle(results).await?;
                }
            }
        }
    }

    /// Waits (at most `within`) for the server to close the connection; the time it took.
    pub async fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut buf = vec![0u8; 8192];
        loop {
            let left = within.checked_sub(started.elapsed())?;
            match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }
}
