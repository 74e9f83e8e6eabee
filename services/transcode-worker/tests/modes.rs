//! Push and pull workers on one queue: both complete jobs, and several of
//! either mode share the jobs with each done exactly once.

mod common;

use std::time::Duration;

use common::*;
use transcode_worker::configuration::Mode;

#[tokio::test]
async fn a_pull_worker_makes_a_ready_ladder_and_a_redelivery_does_no_work() {
    let lab = Lab::new().await;
    let w = lab.worker(Mode::Pull, 1).await;
    let job = lab.submit(&clip(4, 640, 360)).await;
    let video = lab.wait_for(job.video_id, "ready", Duration::from_secs(120)).await;
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
    assert!((video.duration_seconds.unwrap() - 4.0).abs() < 0.5);

    let renditions = lab.videos.renditions(job.video_id).await.unwrap();
    let names: Vec<&str> = renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["240p", "audio"], "a 360p source gets no 480p rung, and one audio rendition");
    assert!(renditions[0].codecs.starts_with("avc1.") && renditions[0].codecs.ends_with(",mp4a.40.2"));
    assert_eq!(renditions[1].codecs, "mp4a.40.2");

    // Everything lives in the committed attempt's folder, master included.
    let served = shared::layout::served_prefix(video.master_key.as_deref().unwrap()).unwrap().to_owned();
    let keys = lab.hls_keys(job.video_id).await;
    assert!(keys.iter().all(|k| k.starts_with(&served)), "{keys:?}");
    for name in ["master.m3u8", "poster.jpg", "manifest.mpd", "thumbnails.vtt", "sprite_000.jpg", "240p/index.m3u8", "240p/iframes.m3u8", "audio/index.m3u8"] {
        assert!(keys.contains(&format!("{served}{name}")), "{name} missing: {keys:?}");
    }

    // The same job again (a redelivery): acknowledged, nothing redone.
    lab.publisher.publish(&job).await.unwrap();
    lab.eventually("redelivery settled", Duration::from_secs(30), || async { w.jobs("skipped").await == 1 }).await;
    assert_eq!(lab.attempts(job.video_id).await.len(), 1);
    assert_eq!(lab.queue_depth(&lab.names().jobs_queue).await, 0);
    let m = w.metrics().await;
    assert_eq!(metric(&m, "transcode_jobs_total", "mode=\"pull\",outcome=\"ready\""), 1.0, "{m}");
    assert!(metric(&m, "transcode_job_wait_seconds_count", "mode=\"pull\"") >= 2.0);
}

#[tokio::test]
async fn three_workers_of_both_modes_share_thirty_jobs_each_done_once() {
    let lab = Lab::new().await;
    let workers = [lab.worker(Mode::Push, 2).await, lab.worker(Mode::Pull, 1).await, lab.worker(Mode::Pull, 2).await];
    let source = clip(1, 160, 90);
    let mut jobs = Vec::new();
    for _ in 0..30 {
        jobs.push(lab.submit(&source).await);
    }
    for job in &jobs {
        lab.wait_for(job.video_id, "ready", Duration::from_secs(240)).await;
    }
    for job in &jobs {
        let attempts = lab.attempts(job.video_id).await;
        assert_eq!(attempts.len(), 1, "video {} was attempted {} times", job.video_id, attempts.len());
        assert_eq!(attempts[0].1, "succeeded");
        let masters = lab.hls_keys(job.video_id).await.into_iter().filter(|k| k.ends_with("/master.m3u8")).count();
        assert_eq!(masters, 1, "one rendition set per video");
    }
    let mut done = Vec::new();
    for w in &workers {
        done.push(w.jobs("ready").await);
    }
    assert_eq!(done.iter().sum::<u64>(), 30, "ready jobs per worker: {done:?}");
    assert!(done.iter().all(|n| *n > 0), "every worker took jobs: {done:?}");
    assert_eq!(lab.queue_depth(&lab.names().jobs_queue).await, 0);
}

#[tokio::test]
async fn smaller_sources_are_taken_first() {
    let lab = Lab::new().await;
    // Queue first, then start one worker: it must drain by priority.
    let big = lab.register(&clip(1, 160, 90)).await;
    let big = shared::queue::TranscodeJob { priority: 1, ..big };
    let small = lab.register(&clip(1, 160, 90)).await;
    lab.publisher.publish(&big).await.unwrap();
    lab.publisher.publish(&small).await.unwrap();
    assert!(small.priority > big.priority, "a tiny source has a higher priority than a 2 GiB one");
    let _w = lab.worker(Mode::Push, 1).await;
    lab.wait_for(big.video_id, "ready", Duration::from_secs(60)).await;
    let small_done = lab.video(small.video_id).await.unwrap().updated_at;
    let big_done = lab.video(big.video_id).await.unwrap().updated_at;
    assert!(small_done < big_done, "the high-priority job finished first");
}
