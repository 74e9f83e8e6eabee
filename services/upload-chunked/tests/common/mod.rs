//! Test harness: upload-chunked spawned on port 0 in its own world (fresh
//! database, bucket, queue and Redis prefixes) against the real services,
//! with one helper per tus request. Each app comes with a creator's API key,
//! which its client (and its raw requests) send on every request.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use shared::auth::{ApiKey, AuthSettings, Role};
use shared::configuration::{ByteSize, Env, Seconds};
use shared::server::HttpSettings;
use shared::testing::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upload_chunked::configuration::{Settings, TusSettings};
use upload_chunked::startup;
use uuid::Uuid;

pub const MIB: usize = 1 << 20;

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub world: World,
    /// Sends `key` on every request.
    pub client: reqwest::Client,
    /// A creator's key; the uploads this app's helpers create are its principal's.
    pub key: ApiKey,
    pub principal: Uuid,
}

/// Small parts (S3's 5 MiB minimum) so tests cross part boundaries with little data.
pub fn test_settings() -> TusSettings {
    let mut tus = TusSettings::from_env(&mut Env::listing());
    tus.part_bytes = ByteSize(5 * MIB as u64);
    tus.max_size = ByteSize(64 * MIB as u64);
    tus.lock_wait = Seconds(Duration::from_millis(500));
    tus.sweep_every = Seconds(Duration::from_millis(300));
    tus
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

pub async fn spawn_app_with(tus: TusSettings) -> TestApp {
    let world = World::new().await;
    spawn_in(world, tus).await
}

/// The settings an app in `world` runs with: no rate limits (tests/ratelimit.rs
/// has its own) and the default key cache.
pub fn settings_in(world: &World, tus: TusSettings) -> Settings {
    Settings {
        http: HttpSettings {
            addr: "127.0.0.1:0".into(),
            shutdown_grace: Seconds(Duration::from_secs(1)),
        },
        telemetry: Default::default(),
        backends: world.backends.clone(),
        tus,
        events: shared::watch::WatchSettings::from_env(&mut Env::listing()),
        rate_limits: Default::default(),
        auth: AuthSettings::from_env(&mut Env::listing()),
    }
}

/// An app in `world`, with a new creator's key.
pub async fn spawn_in(world: World, tus: TusSettings) -> TestApp {
    let settings = settings_in(&world, tus);
    let (key, principal) = world.api_key(Role::Creator).await;
    start(world, settings, key, principal).await
}

/// A second replica of `first`: same database, bucket and queue, same key.
pub async fn spawn_replica(first: &TestApp, tus: TusSettings) -> TestApp {
    let world = World { id: first.world.id.clone(), backends: first.world.backends.clone() };
    let settings = settings_in(&world, tus);
    start(world, settings, first.key.clone(), first.principal).await
}

pub async fn start(world: World, settings: Settings, key: ApiKey, principal: Uuid) -> TestApp {
    let app = startup::build(settings).await.expect("app builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        world,
        client: keyed(&key),
        key,
        principal,
    }
}

/// A client that sends `key` on every request, as tus clients send their headers.
pub fn keyed(key: &ApiKey) -> reqwest::Client {
    reqwest::Client::builder().default_headers(shared::testing::bearer(key)).build().unwrap()
}

/// Deterministic bytes that differ at every offset, so a misplaced chunk shows.
pub fn data(len: usize, seed: u32) -> Vec<u8> {
    shared::testing::noise(len, seed.into())
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn tus(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.tus_as(&self.client, method, path)
    }

    /// A tus request sent by another client (another key, or none).
    pub fn tus_as(&self, client: &reqwest::Client, method: Method, path: &str) -> reqwest::RequestBuilder {
        client
            .request(method, self.url(path))
            .header("tus-resumable", "1.0.0")
    }

    /// The head of a raw HTTP/1.1 PATCH with this app's key; `framing` is
    /// its Content-Length or Transfer-Encoding lines (each ending in CRLF).
    pub fn patch_head(&self, path: &str, offset: usize, framing: &str) -> String {
        format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/offset+octet-stream\r\n{framing}\r\n",
            self.key.expose()
        )
    }

    /// Creates an upload; panics unless 201. Returns its path.
    pub async fn create(&self, length: usize, metadata: &str) -> String {
        let res = self
            .tus(Method::POST, "/api/v1/uploads")
            .header("upload-length", length)
            .header("upload-metadata", metadata)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        location(&res)
    }

    /// Creates a partial upload (concatenation); returns its path.
    pub async fn create_partial(&self, length: usize) -> String {
        let res = self
            .tus(Method::POST, "/api/v1/uploads")
            .header("upload-length", length)
            .header("upload-concat", "partial")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        location(&res)
    }

    pub async fn patch(&self, path: &str, offset: usize, body: Vec<u8>) -> Response {
        self.patch_with(path, offset, body, &[]).await
    }

    pub async fn patch_with(
        &self,
        path: &str,
        offset: usize,
        body: Vec<u8>,
        extra: &[(&str, String)],
    ) -> Response {
        let mut req = self
            .tus(Method::PATCH, path)
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream");
        for (k, v) in extra {
            req = req.header(*k, v);
        }
        req.body(body).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.tus(Method::HEAD, path).send().await.unwrap()
    }

    pub async fn offset(&self, path: &str) -> usize {
        let res = self.head(path).await;
        assert_eq!(res.status(), StatusCode::OK);
        header(res.headers(), "upload-offset").parse().unwrap()
    }

    /// Sends `data` in chunks of the given sizes, checking each new offset.
    pub async fn upload_in_chunks(&self, path: &str, data: &[u8], sizes: &[usize]) -> Response {
        let mut offset = 0;
        let mut last = None;
        for size in sizes.iter().cycle() {
            if offset == data.len() {
                break;
            }
            let end = (offset + size).min(data.len());
            let res = self.patch(path, offset, data[offset..end].to_vec()).await;
            assert_eq!(
                res.status(),
                StatusCode::NO_CONTENT,
                "PATCH at {offset}: {}",
                res.text().await.unwrap()
            );
            assert_eq!(header(res.headers(), "upload-offset"), end.to_string());
            offset = end;
            last = Some(res);
        }
        last.expect("at least one chunk")
    }

    pub async fn object_sha256(&self, key: &str) -> Option<String> {
        let obj = self.world.backends.s3.store().get(key).await.unwrap()?;
        Some(sha256_hex(&obj.body.collect().await.unwrap().into_bytes()))
    }

    pub async fn object_exists(&self, key: &str) -> bool {
        self.world
            .backends
            .s3
            .store()
            .get(key)
            .await
            .unwrap()
            .is_some()
    }

    pub async fn open_multipart_uploads(&self) -> usize {
        self.world
            .backends
            .s3
            .store()
            .open_multipart_uploads("")
            .await
            .unwrap()
            .len()
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let pool = self.world.backends.database.pool().unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }

    /// Sends raw HTTP/1.1 bytes and returns the response head (status line and headers).
    pub async fn raw(&self, request: &[u8], close_after_send: bool) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        s.write_all(request).await.unwrap();
        if close_after_send {
            drop(s);
            return String::new();
        }
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            assert!(Instant::now() < deadline, "no response");
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Waits (bounded) for a condition that background work makes true.
    pub async fn eventually(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn location(res: &Response) -> String {
    header(res.headers(), "location")
}

pub fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts a problem+json body with the given status and code.
pub async fn assert_problem(res: Response, status: u16, code: &str) {
    assert_eq!(res.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(header(res.headers(), "tus-resumable"), "1.0.0");
    assert_eq!(
        header(res.headers(), "content-type"),
        "application/problem+json"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 20),
        "{body}"
    );
}
