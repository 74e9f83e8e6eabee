//! Progress is reported from the start of an encode; a worker process
//! SIGKILLed mid-transcode leaves its job to another worker, which finishes
//! it with one rendition set; deleting a video cancels its
//! running job and removes its objects.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shared::cache::Progress;
use transcode_worker::configuration::Mode;

#[tokio::test]
async fn a_worker_killed_mid_transcode_leaves_the_job_to_another_with_one_rendition_set() {
    let lab = Lab::new().await;
    let cache = lab.world.backends.redis.cache().unwrap();
    // veryslow keeps the victim encoding for minutes, so the kill lands
    // mid-encode however loaded the machine is; the rescuer encodes fast.
    let mut victim = lab.process(Mode::Push, "veryslow");
    let job = lab.submit(&clip(30, 854, 480)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let progress = cache.progress(job.video_id).await.ok().flatten();
        if let Some(p) = progress.as_ref().filter(|p: &&Progress| p.stage == "transcoding" && p.percent > 0.0) {
            // ffmpeg reports only once all its outputs have started; one that
            // starts late (a sprite sheet did) hid progress until the end.
            assert!(p.percent < 50.0, "the first progress seen is from the start of the encode: {p:?}");
            break;
        }
        let exited = victim.child.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let status = lab.video(job.video_id).await.map(|v| v.status);
            panic!("the victim is not encoding: progress {progress:?}, video {status:?}, exit {exited:?}; its log ends:\n{}", victim.log_tail(40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = lab.attempts(job.video_id).await;
    assert_eq!(first.len(), 1);
    // What a worker killed while uploading would have left in its folder.
    let (victim_attempt,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM transcode_attempts WHERE video_id = $1").bind(job.video_id).fetch_one(lab.videos.pool()).await.unwrap();
    let stray = format!("{}240p/seg_00000.m4s", shared::layout::attempt_prefix(job.video_id, victim_attempt));
    lab.storage.put_bytes(&stray, vec![0u8; 100].into(), "video/iso.segment").await.unwrap();

    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    assert_eq!(lab.video(job.video_id).await.unwrap().status, "processing", "nothing committed by the victim");

    let _rescuer = lab.worker(Mode::Pull, 1).await;
    let video = lab.wait_for(job.video_id, "ready", Duration::from_secs(180)).await;
    let attempts = lab.attempts(job.video_id).await;
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(outcomes, ["abandoned", "succeeded"]);

    let served = shared::layout::served_prefix(video.master_key.as_deref().unwrap()).unwrap().to_owned();
    let keys = lab.hls_keys(job.video_id).await;
    assert!(keys.iter().all(|k| k.starts_with(&served)), "the killed attempt's objects were removed: {keys:?}");
    assert_eq!(keys.iter().filter(|k| k.ends_with("master.m3u8")).count(), 1);
    let names: Vec<String> = lab.videos.renditions(job.video_id).await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["480p", "240p", "audio"]);
    let dir = lab.download_served(&video).await;
    run(std::process::Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(dir.path().join("master.m3u8")).args(["-map", "0", "-f", "null", "-"]));
}

#[tokio::test]
async fn deleting_a_video_cancels_its_running_job_and_removes_its_objects() {
    let lab = Lab::new().await;
    let mut settings = lab.settings(Mode::Push, 1);
    // A slow encode, so the deletion surely lands while ffmpeg runs.
    settings.transcode.preset = "veryslow".into();
    let w = lab.spawn(settings).await;
    let cache = lab.world.backends.redis.cache().unwrap();
    let job = lab.submit(&clip(30, 854, 480)).await;
    lab.eventually("the job is running", Duration::from_secs(60), || async {
        cache.progress(job.video_id).await.ok().flatten().is_some_and(|p: Progress| p.stage != "downloading")
    })
    .await;
    // Past probing, into the (slow) encode.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // What DELETE /api/v1/videos/{id} does (upload-http2 tests cover the route).
    let video = lab.videos.begin_delete(job.video_id).await.unwrap().unwrap();
    shared::videos::Videos::delete_objects(&lab.storage, &video).await.unwrap();
    lab.videos.finish_delete(job.video_id).await.unwrap();

    lab.eventually("job cancelled", Duration::from_secs(30), || async { w.jobs("cancelled").await == 1 }).await;
    assert_eq!(w.jobs("ready").await + w.jobs("superseded").await, 0, "the job did not finish");
    assert!(lab.hls_keys(job.video_id).await.is_empty());
    assert!(lab.storage.list_keys(&job.source_key).await.unwrap().is_empty(), "source removed");
    assert_eq!(lab.queue_depth(&lab.names().jobs_queue).await, 0, "the cancelled job was settled, not requeued");
    let scratch: Vec<_> = std::fs::read_dir(lab.scratch.path().join("work")).unwrap().collect();
    assert!(scratch.is_empty(), "the job's scratch folder is gone");
}
