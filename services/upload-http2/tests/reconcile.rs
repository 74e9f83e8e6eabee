//! No orphaned bytes after a crash: the real upload-http2 binary is killed
//! with SIGKILL (a) after `CompleteMultipartUpload` but before its row is
//! inserted (the insert is held back by a table lock the test takes), and
//! (b) in the middle of a body, with its multipart upload open. A second
//! process's reconciler then removes the orphaned object and aborts the
//! multipart upload within one interval, and keeps what rows still own: a
//! committed video's source and a live tus upload's multipart upload.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shared::testing::{eventually, metric, noise, World};
use sqlx::Connection;
use uuid::Uuid;

const INTERVAL_SECS: u64 = 2;

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on a free port in `world`, reconciling every `every` with a `grace`.
async fn start(world: &World, every: &str, grace: &str) -> Service {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_upload-http2"))
        .envs(world.env())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RECONCILE_INTERVAL", every)
        .env("RECONCILE_GRACE", grace)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("upload-http2 starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "upload-http2 ready", || {
        let r = http.get(format!("{base}/health/ready")).send();
        async move { r.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    Service { child, base }
}

#[tokio::test]
async fn a_worker_killed_between_object_and_row_leaves_bytes_the_reconciler_removes_within_one_interval() {
    let world = World::new().await;
    let storage = world.backends.s3.store();
    storage.ensure_bucket().await.unwrap();
    let pool = world.backends.database.pool().unwrap();
    let (key, _) = world.api_key(shared::auth::Role::Creator).await;
    let http = reqwest::Client::builder().default_headers(shared::testing::bearer(&key)).build().unwrap();

    // The doomed process reconciles rarely: its own reconciler must not be what cleans up.
    let doomed = start(&world, "1h", "1h").await;
    let kept = http.post(format!("{}/api/v1/videos?title=kept", doomed.base)).header("content-type", "video/mp4").body(noise(300_000, 1)).send().await.unwrap();
    assert_eq!(kept.status(), 201, "{:?}", kept.text().await);
    let sources_before = storage.list_keys("sources/").await.unwrap();
    assert_eq!(sources_before.len(), 1);

    // (a) The row insert waits on a lock; the object completes meanwhile.
    let mut locker = sqlx::PgConnection::connect(world.backends.database.url.expose()).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE videos IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let upload = {
        let (http, base) = (http.clone(), doomed.base.clone());
        tokio::spawn(async move { http.post(format!("{base}/api/v1/videos?title=orphan")).header("content-type", "video/mp4").body(noise(300_000, 2)).send().await })
    };
    eventually(Duration::from_secs(30), "the second source is complete in S3", || {
        let s = storage.clone();
        async move { s.list_keys("sources/").await.unwrap().len() == 2 }
    })
    .await;
    // (b) A body cut off mid-stream: its multipart upload stays open.
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = rx;
    let cut = {
        let (http, base) = (http.clone(), doomed.base.clone());
        tokio::spawn(async move { http.post(format!("{base}/api/v1/videos?title=cut")).header("content-type", "video/mp4").body(reqwest::Body::wrap_stream(stream)).send().await })
    };
    let mut tx = tx;
    futures::SinkExt::send(&mut tx, Ok(noise(6 << 20, 3))).await.unwrap();
    eventually(Duration::from_secs(30), "the cut upload's multipart upload is open", || {
        let s = storage.clone();
        async move { !s.open_multipart_uploads("sources/").await.unwrap().is_empty() }
    })
    .await;

    let mut doomed = doomed;
    doomed.child.kill().unwrap(); // SIGKILL: no guard, no Drop runs
    doomed.child.wait().unwrap();
    // PostgreSQL notices a dead client only when it next talks to it; a
    // backend blocked on our lock would insert the row once we let go. The
    // process is dead, so its sessions go too, as they would on a real host.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock.rollback().await.unwrap();
    // The killed process cannot answer; whatever the clients saw is moot.
    let _ = upload.await;
    drop(tx);
    let _ = cut.await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM videos").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1, "the orphan's row was never written");
    let orphan: Vec<String> = storage.list_keys("sources/").await.unwrap().into_iter().filter(|k| !sources_before.contains(k)).collect();
    assert_eq!(orphan.len(), 1);

    // A live tus upload owns its multipart upload: never touched.
    let tus_id = Uuid::now_v7();
    let tus_key = shared::layout::source(tus_id);
    let tus_multipart = storage.create_multipart(&tus_key, "video/mp4").await.unwrap();
    sqlx::query("INSERT INTO uploads (id, object_key, part_size, s3_upload_id, sha256_state, expires_at) VALUES ($1, $2, 5242880, $3, '\\x00', now() + interval '1 day')")
        .bind(tus_id)
        .bind(&tus_key)
        .bind(&tus_multipart)
        .execute(&pool)
        .await
        .unwrap();

    // Everything above is now older than the reconciler's grace.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reconciler = start(&world, &format!("{INTERVAL_SECS}s"), "1s").await;
    eventually(Duration::from_secs(INTERVAL_SECS * 2 + 5), "the orphaned object is removed", || {
        let s = storage.clone();
        let o = orphan[0].clone();
        async move { !s.list_keys("sources/").await.unwrap().contains(&o) }
    })
    .await;
    eventually(Duration::from_secs(INTERVAL_SECS * 2 + 5), "only the live tus upload's multipart upload is left", || {
        let s = storage.clone();
        let t = tus_multipart.clone();
        async move { s.open_multipart_uploads("").await.unwrap().into_iter().map(|(_, id)| id).collect::<Vec<_>>() == [t] }
    })
    .await;
    assert_eq!(storage.list_keys("sources/").await.unwrap(), sources_before, "the committed video's source is kept");
    let m = http.get(format!("{}/metrics", reconciler.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&m, "orphans_removed_total"), 2.0, "{m}");
}
