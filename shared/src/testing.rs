//! Test support (feature `testing`): an isolated world per test.
//!
//! Every test gets a fresh PostgreSQL database, its own S3 bucket, AMQP
//! prefix and Redis prefix, so tests run in parallel against the real
//! services without seeing each other. Connection details come from the
//! same variables the services read (`scripts/test` exports the native
//! stack's); a missing one is named in the panic.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use uuid::Uuid;

use crate::backends::BackendSettings;
use crate::configuration::Env;

/// Settings of one isolated test world.
pub struct World {
    pub id: String,
    pub backends: BackendSettings,
}

fn env_settings() -> BackendSettings {
    let mut env = Env::from_process();
    let out = BackendSettings::from_env(&mut env);
    if let Err(e) = env.finish() {
        panic!("{e}\nRun the tests through scripts/test, or export a service's environment first: set -a; . <(scripts/stack env upload-http2); set +a");
    }
    out
}

impl World {
    /// Creates the database (migrated) and returns settings pointing at it.
    pub async fn new() -> Self {
        crate::telemetry::init_for_tests();
        let mut b = env_settings();
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let name = format!("test_{id}");
        let opts: PgConnectOptions = b.database.connect_options().expect("DATABASE_URL");
        let mut admin = opts.clone().database("postgres").connect().await.expect("connect to PostgreSQL");
        admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("create test database");
        admin.close().await.ok();
        let url = opts.database(&name).to_url_lossy().to_string();
        b.database.url = url.parse().expect("infallible");
        let pool = b.database.pool().expect("pool");
        crate::db::migrate(&pool).await.expect("migrate test database");
        b.queue.prefix = format!("test-{id}");
        b.s3.bucket = format!("test-{id}");
        b.redis.prefix = format!("test-{id}");
        Self { id, backends: b }
    }
}

impl World {
    /// The world's variables plus `HTTP_ADDR=127.0.0.1:0` and `overrides`,
    /// read as a service reads its environment: for an in-process app
    /// configured exactly as its binary would be.
    pub fn env_with(&self, overrides: &[(&str, &str)]) -> Env {
        let mut vars: std::collections::HashMap<String, String> = self.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        vars.insert("HTTP_ADDR".into(), "127.0.0.1:0".into());
        vars.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Env::from_fn(move |k| vars.get(k).cloned())
    }

    /// The world as environment variables, for a service started as a process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let b = &self.backends;
        vec![
            ("DATABASE_URL", b.database.url.expose().to_owned()),
            ("AMQP_URL", b.queue.url.expose().to_owned()),
            ("AMQP_PREFIX", b.queue.prefix.clone()),
            ("REDIS_URL", b.redis.url.expose().to_owned()),
            ("REDIS_PREFIX", b.redis.prefix.clone()),
            ("S3_ENDPOINT", b.s3.endpoint.clone()),
            ("S3_REGION", b.s3.region.clone()),
            ("S3_ACCESS_KEY_ID", b.s3.access_key_id.clone()),
            ("S3_SECRET_ACCESS_KEY", b.s3.secret_access_key.expose().to_owned()),
            ("S3_BUCKET", b.s3.bucket.clone()),
            ("S3_FORCE_PATH_STYLE", b.s3.force_path_style.to_string()),
            // Tests use the native stack's example secrets.
            ("PLATFORM_ENV", "dev".to_owned()),
        ]
    }
}

impl World {
    /// A new principal with `role` and its first key, stored in the world's database.
    pub async fn api_key(&self, role: crate::auth::Role) -> (crate::auth::ApiKey, Uuid) {
        let pool = self.backends.database.pool().expect("pool");
        let (key, info) = crate::auth::KeyStore::new(pool).create(None, role, "test").await.expect("create an API key");
        (key, info.principal_id)
    }
}

/// `Authorization: Bearer <key>` as default headers, for a reqwest client builder.
pub fn bearer(key: &crate::auth::ApiKey) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    h.insert(axum::http::header::AUTHORIZATION, format!("Bearer {}", key.expose()).parse().expect("ascii"));
    h
}

/// Stores `bytes` as a new video's source and registers the video, as an
/// upload service would; returns its job, not yet published.
pub async fn register_source(storage: &crate::storage::Storage, videos: &crate::videos::Videos, bytes: &[u8]) -> anyhow::Result<crate::queue::TranscodeJob> {
    let id = Uuid::now_v7();
    let key = crate::layout::source(id);
    storage.put_bytes(&key, bytes.to_vec().into(), "video/mp4").await?;
    let stored = crate::storage::Stored { key: key.clone(), size: bytes.len() as u64, sha256: "0".repeat(64) };
    let new = crate::videos::NewVideo { id, owner_id: Some(Uuid::new_v4()), visibility: Default::default(), title: "test".into(), description: String::new(), content_type: "video/mp4".into(), stored };
    videos.insert_uploaded(&new).await?;
    Ok(crate::queue::TranscodeJob::new(id, key, bytes.len() as u64))
}

/// A `ready` video whose committed folder holds `files` (relative name,
/// bytes), as if a transcode had written and committed them: for delivery
/// tests that need exact, known objects rather than an encoder's output.
pub async fn ready_video(storage: &crate::storage::Storage, videos: &crate::videos::Videos, pool: &sqlx::PgPool, files: &[(&str, bytes::Bytes)]) -> anyhow::Result<Uuid> {
    let job = register_source(storage, videos, b"source").await?;
    let prefix = crate::layout::attempt_prefix(job.video_id, Uuid::now_v7());
    for (name, body) in files {
        let ct = crate::layout::content_type(name).unwrap_or("application/octet-stream");
        storage.put_bytes(&format!("{prefix}{name}"), body.clone(), ct).await?;
    }
    sqlx::query("UPDATE videos SET status = 'ready', master_key = $2 WHERE id = $1")
        .bind(job.video_id)
        .bind(format!("{prefix}{}", crate::layout::MASTER_PLAYLIST))
        .execute(pool)
        .await?;
    Ok(job.video_id)
}

/// Deterministic, incompressible bytes that differ at every offset and for
/// every seed (xorshift), so a misplaced or mixed-up chunk shows.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Polls `check` every 100 ms until it holds, failing the test after `within`.
pub async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A series' value on a Prometheus text page, summed over its label sets.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
