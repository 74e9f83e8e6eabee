//! Failures: permanent ones go to the dead-letter queue at once with their
//! reason; transient ones (S3 unreachable, a stalled ffmpeg) are retried
//! through the delay queues and succeed; exhausted ones are dead-lettered;
//! the admin endpoint lists dead jobs and requeues one, for admin keys only.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shared::auth::Role;
use tokio::net::{TcpListener, TcpStream};
use transcode_worker::configuration::Mode;

#[tokio::test]
async fn bytes_that_are_not_media_are_dead_lettered_after_one_attempt_and_can_be_requeued() {
    let lab = Lab::new().await;
    let w = lab.worker(Mode::Push, 1).await;
    let job = lab.submit(&b"this is a text file, not a video".repeat(100)).await;
    let video = lab.wait_for(job.video_id, "failed", Duration::from_secs(60)).await;
    assert!(video.error.as_deref().unwrap().contains("not a media file"), "{:?}", video.error);
    assert_eq!(lab.attempts(job.video_id).await.len(), 1);
    let dead = lab.names().dead_queue;
    lab.eventually("job in the dead-letter queue", Duration::from_secs(10), || async { lab.queue_depth(&dead).await == 1 }).await;
    assert!(lab.hls_keys(job.video_id).await.is_empty(), "a failed attempt leaves no objects");

    let http = lab.client_as(Role::Admin).await;
    let listed: serde_json::Value = http.get(format!("{}/admin/dead-jobs", w.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["total"], 1);
    let entry = &listed["jobs"][0];
    assert_eq!(entry["job_id"], job.job_id.to_string());
    assert_eq!(entry["reason"], "permanent");
    assert_eq!(entry["attempts"], 1);
    assert!(entry["last_error"].as_str().unwrap().contains("not a media file"), "{entry}");
    assert_eq!(lab.queue_depth(&dead).await, 1, "listing leaves the job in place");

    // Bad input to the admin endpoint gets a problem body.
    let r = http.get(format!("{}/admin/dead-jobs?limit=0", w.base)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http.post(format!("{}/admin/dead-jobs/{}/requeue", w.base, uuid::Uuid::now_v7())).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Requeued: the video is tried again (and, being text, fails again).
    let r = http.post(format!("{}/admin/dead-jobs/{}/requeue", w.base, job.job_id)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let requeued: serde_json::Value = r.json().await.unwrap();
    assert_eq!(requeued["requeued_from"], job.job_id.to_string());
    let new_job = requeued["job_id"].as_str().unwrap().to_owned();
    assert_ne!(new_job, job.job_id.to_string(), "a requeued job is a new job with fresh attempts");
    lab.eventually("second attempt recorded", Duration::from_secs(30), || async { lab.attempts(job.video_id).await.len() == 2 }).await;
    lab.wait_for(job.video_id, "failed", Duration::from_secs(30)).await;
    lab.eventually("back in the dead-letter queue", Duration::from_secs(10), || async { lab.queue_depth(&dead).await == 1 }).await;
    assert_eq!(w.jobs("dead_permanent").await, 2);

    // A requeue for a video that is not failed is refused and changes nothing.
    sqlx::query("UPDATE videos SET status = 'ready' WHERE id = $1").bind(job.video_id).execute(lab.videos.pool()).await.unwrap();
    let r = http.post(format!("{}/admin/dead-jobs/{new_job}/requeue", w.base)).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(lab.queue_depth(&dead).await, 1);
}

/// A TCP proxy in front of S3 that can cut every connection and refuse new ones.
struct Outage {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Outage {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (d, c) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, down, cut }
    }

    fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_s3_outage_fails_an_attempt_that_is_retried_and_succeeds() {
    let lab = Lab::new().await;
    let upstream = lab.world.backends.s3.endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let outage = Outage::start(upstream).await;
    let mut settings = lab.settings(Mode::Push, 1);
    settings.backends.s3.endpoint = format!("http://{}", outage.addr);
    settings.intake.retry_base = Duration::from_secs(3);
    let w = lab.spawn(settings).await;

    outage.go_down();
    let job = lab.submit(&clip(2, 320, 180)).await;
    lab.eventually("first attempt failed on S3", Duration::from_secs(60), || async {
        lab.attempts(job.video_id).await.first().is_some_and(|a| a.1 == "failed")
    })
    .await;
    outage.come_back();
    lab.wait_for(job.video_id, "ready", Duration::from_secs(60)).await;

    let attempts = lab.attempts(job.video_id).await;
    assert_eq!(attempts.iter().map(|a| (a.0, a.1.as_str())).collect::<Vec<_>>(), [(1, "failed"), (2, "succeeded")]);
    assert!(attempts[0].2.as_deref().unwrap().contains("GetObject"), "{:?}", attempts[0].2);
    let m = w.metrics().await;
    assert_eq!(metric(&m, "transcode_failures_total", "reason=\"storage\""), 1.0, "{m}");
    assert_eq!(w.jobs("retried").await, 1);
}

#[tokio::test]
async fn a_stalled_ffmpeg_is_killed_and_the_job_retried() {
    let lab = Lab::new().await;
    let mut settings = lab.settings(Mode::Pull, 1);
    settings.transcode.ffmpeg = hanging_ffmpeg(lab.scratch.path(), 1).display().to_string();
    settings.transcode.stall_timeout = Duration::from_secs(2);
    let w = lab.spawn(settings).await;
    let job = lab.submit(&clip(2, 320, 180)).await;
    lab.wait_for(job.video_id, "ready", Duration::from_secs(60)).await;
    let attempts = lab.attempts(job.video_id).await;
    assert_eq!(attempts.len(), 2);
    assert!(attempts[0].2.as_deref().unwrap().contains("no progress"), "{:?}", attempts[0].2);
    assert_eq!(metric(&w.metrics().await, "transcode_failures_total", "reason=\"stalled\""), 1.0);
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_lettered_with_its_last_error() {
    let lab = Lab::new().await;
    let mut settings = lab.settings(Mode::Push, 1);
    settings.transcode.ffmpeg = hanging_ffmpeg(lab.scratch.path(), 99).display().to_string();
    settings.transcode.stall_timeout = Duration::from_secs(1);
    settings.intake.max_attempts = 2;
    let w = lab.spawn(settings).await;
    let job = lab.submit(&clip(1, 160, 90)).await;
    let video = lab.wait_for(job.video_id, "failed", Duration::from_secs(60)).await;
    assert!(video.error.as_deref().unwrap().starts_with("gave up after 2 attempts"), "{:?}", video.error);
    let dead = lab.names().dead_queue;
    lab.eventually("job in the dead-letter queue", Duration::from_secs(10), || async { lab.queue_depth(&dead).await == 1 }).await;
    let listed: serde_json::Value = lab.client_as(Role::Admin).await.get(format!("{}/admin/dead-jobs", w.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["jobs"][0]["reason"], "exhausted");
    assert_eq!(listed["jobs"][0]["attempts"], 2);
}

#[tokio::test]
async fn a_job_that_killed_three_workers_is_dead_lettered_not_retried_forever() {
    let lab = Lab::new().await;
    let w = lab.worker(Mode::Pull, 1).await;
    let job = lab.register(&clip(1, 160, 90)).await;
    // Three earlier workers died on this job (their attempts never settled).
    for _ in 0..3 {
        sqlx::query("INSERT INTO transcode_attempts (id, video_id, job_id, attempt, worker, outcome) VALUES ($1, $2, $3, 1, 'gone', 'abandoned')")
            .bind(uuid::Uuid::now_v7())
            .bind(job.video_id)
            .bind(job.job_id)
            .execute(lab.videos.pool())
            .await
            .unwrap();
    }
    lab.publisher.publish(&job).await.unwrap();
    let video = lab.wait_for(job.video_id, "failed", Duration::from_secs(30)).await;
    assert!(video.error.as_deref().unwrap().contains("3 workers stopped"), "{:?}", video.error);
    let dead = lab.names().dead_queue;
    lab.eventually("job in the dead-letter queue", Duration::from_secs(10), || async { lab.queue_depth(&dead).await == 1 }).await;
    assert_eq!(w.jobs("dead_permanent").await, 1);
}

#[tokio::test]
async fn the_admin_endpoints_need_an_admin_key_and_health_and_metrics_stay_open() {
    let lab = Lab::new().await;
    let w = lab.worker(Mode::Push, 1).await;
    let list = format!("{}/admin/dead-jobs", w.base);
    let requeue = format!("{}/admin/dead-jobs/{}/requeue", w.base, uuid::Uuid::now_v7());
    let anonymous = reqwest::Client::new();
    let creator = lab.client_as(Role::Creator).await;
    let admin = lab.client_as(Role::Admin).await;

    for (who, client, list_status, requeue_status) in [("no key", &anonymous, 401, 401), ("a creator", &creator, 403, 403), ("an admin", &admin, 200, 404)] {
        let r = client.get(&list).send().await.unwrap();
        assert_eq!(r.status(), list_status, "list with {who}");
        if list_status != 200 {
            assert_eq!(r.headers()["content-type"], "application/problem+json", "list with {who}");
        }
        if list_status == 401 {
            assert!(r.headers().contains_key("www-authenticate"));
        }
        // An admin gets past the check to the job lookup (no such job: 404).
        let r = client.post(&requeue).send().await.unwrap();
        assert_eq!(r.status(), requeue_status, "requeue with {who}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "requeue with {who}");
    }
    let listed: serde_json::Value = admin.get(&list).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["total"], 0);

    let r = anonymous.get(&list).header("authorization", "Bearer not-a-key").send().await.unwrap();
    assert_eq!(r.status(), 401, "a malformed key");
    for open in ["/health/live", "/metrics"] {
        assert_eq!(anonymous.get(format!("{}{open}", w.base)).send().await.unwrap().status(), 200, "{open} needs no key");
    }
}
