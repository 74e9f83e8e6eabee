//! An upload's life against the real services: bytes across part and
//! tail boundaries reassembled exactly, the video it becomes, a cut-off
//! PATCH keeping its bytes, deferred lengths, concatenation (finished and
//! unfinished), expiry reclaiming S3, and the lock shared by replicas.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use upload_chunked::configuration::TusSettings;

fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn odd_sized_chunks_across_parts_and_tails_become_a_byte_exact_video_with_a_job() {
    let app = spawn_app().await;
    let body = data(17 * MIB + 12_345, 7);
    let meta = format!(
        "filename {},filetype {}",
        b64("My clip.mp4".as_bytes()),
        b64(b"video/mp4")
    );
    let path = app.create(body.len(), &meta).await;
    // 3 MiB, then 4 MiB (crosses the 5 MiB part), 1 byte, 9 MiB (two parts at once) …
    let last = app
        .upload_in_chunks(&path, &body, &[3 * MIB, 4 * MIB, 1, 9 * MIB])
        .await;
    let id = id_of(&path);
    assert_eq!(
        header(last.headers(), "link"),
        format!("</api/v1/videos/{id}>; rel=\"video\"")
    );
    assert!(
        last.headers().get("upload-expires").is_none(),
        "a finished upload does not expire"
    );
    let head = app.head(&path).await;
    assert_eq!(
        header(head.headers(), "link"),
        format!("</api/v1/videos/{id}>; rel=\"video\"")
    );
    assert_eq!(
        header(head.headers(), "upload-offset"),
        body.len().to_string()
    );

    assert_eq!(
        app.object_sha256(&format!("sources/{id}")).await.unwrap(),
        sha256_hex(&body)
    );
    let pool = app.world.backends.database.pool().unwrap();
    let (title, sha, size, status): (String, String, i64, String) = sqlx::query_as(
        "SELECT title, source_sha256, source_size, status FROM videos WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (title.as_str(), sha, size as usize, status.as_str()),
        ("My clip.mp4", sha256_hex(&body), body.len(), "queued")
    );
    assert_eq!(app.open_multipart_uploads().await, 0);
    assert!(!app.object_exists(&format!("tus/tails/{id}")).await);
    assert_problem(
        app.patch(&path, body.len(), vec![1]).await,
        403,
        "tus-upload-complete",
    )
    .await;
    // A client whose last 204 was lost asks again with nothing left to send
    // (tuspy: HEAD, then PATCH the rest): it is told what it was told then.
    let retried = app.patch(&path, body.len(), vec![]).await;
    assert_eq!(retried.status(), 204);
    assert_eq!(header(retried.headers(), "upload-offset"), body.len().to_string());
    assert_eq!(header(retried.headers(), "link"), format!("</api/v1/videos/{id}>; rel=\"video\""));
    // One that read a stale offset is told the offset does not match (409,
    // which clients answer with HEAD), not that it may never write (403).
    assert_problem(app.patch(&path, body.len() - 7, vec![1; 7]).await, 409, "tus-offset-mismatch").await;

    let conn = app.world.backends.queue.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let job = ch
        .basic_get(
            &app.world.backends.queue.names().jobs_queue,
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a job");
    let job: serde_json::Value = serde_json::from_slice(&job.delivery.data).unwrap();
    assert_eq!(job["video_id"], id);
}

#[tokio::test]
async fn a_patch_cut_off_midway_keeps_every_byte_received_and_the_upload_resumes() {
    let app = spawn_app().await;
    let body = data(14 * MIB, 8);
    let path = app.create(body.len(), "").await;
    let sent = 8 * MIB + 777;
    let mut req = app.patch_head(&path, 0, &format!("Content-Length: {}\r\n", body.len())).into_bytes();
    req.extend_from_slice(&body[..sent]);
    app.raw(&req, true).await;
    app.eventually("the cut PATCH commits what it received", async || {
        app.offset(&path).await == sent
    })
    .await;
    assert_eq!(
        app.patch(&path, sent, body[sent..].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    let id = id_of(&path);
    assert_eq!(
        app.object_sha256(&format!("sources/{id}")).await.unwrap(),
        sha256_hex(&body)
    );
}

#[tokio::test]
async fn a_deferred_length_is_declared_later_and_completes_the_upload() {
    let app = spawn_app().await;
    let body = data(6 * MIB + 3, 9);
    let res = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    let path = location(&res);
    assert_eq!(
        app.patch(&path, 0, body.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    // The length arrives with an empty PATCH after all the bytes: the tail becomes the last part.
    let res = app
        .patch_with(
            &path,
            body.len(),
            vec![],
            &[("upload-length", body.len().to_string())],
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NO_CONTENT,
        "{}",
        res.text().await.unwrap()
    );
    assert_eq!(
        header(app.head(&path).await.headers(), "upload-length"),
        body.len().to_string()
    );
    assert_eq!(
        app.object_sha256(&format!("sources/{}", id_of(&path)))
            .await
            .unwrap(),
        sha256_hex(&body)
    );
    assert_problem(
        app.patch_with(&path, body.len(), vec![], &[("upload-length", "5".into())])
            .await,
        403,
        "tus-upload-complete",
    )
    .await;
}

#[tokio::test]
async fn creation_with_upload_stores_the_first_bytes_and_reports_the_offset() {
    let app = spawn_app().await;
    let body = data(3000, 10);
    let res = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-length", 5000)
        .header("content-type", "application/offset+octet-stream")
        .body(body[..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header(res.headers(), "upload-offset"), "2000");
    assert_eq!(app.offset(&location(&res)).await, 2000);
}

#[tokio::test]
async fn partial_uploads_concatenate_into_one_video_and_the_final_refuses_patches() {
    let app = spawn_app().await;
    let (a, b) = (data(5 * MIB + 1, 11), data(1234, 12));
    let mut partials = vec![];
    for part in [&a, &b] {
        let path = app.create_partial(part.len()).await;
        app.upload_in_chunks(&path, part, &[usize::MAX]).await;
        assert_eq!(
            header(app.head(&path).await.headers(), "upload-concat"),
            "partial"
        );
        partials.push(path);
    }
    let concat = format!("final;{} {}", app.url(&partials[0]), partials[1]);
    let res = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-concat", &concat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let path = location(&res);
    let id = id_of(&path);
    assert_eq!(
        header(res.headers(), "link"),
        format!("</api/v1/videos/{id}>; rel=\"video\"")
    );
    let head = app.head(&path).await;
    let total = (a.len() + b.len()).to_string();
    assert_eq!(header(head.headers(), "upload-offset"), total);
    assert_eq!(header(head.headers(), "upload-length"), total);
    assert_eq!(
        header(head.headers(), "upload-concat"),
        format!("final;{} {}", partials[0], partials[1])
    );
    let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
    assert_eq!(
        app.object_sha256(&format!("sources/{id}")).await.unwrap(),
        sha256_hex(&whole)
    );
    assert_problem(
        app.patch(&path, 0, vec![1]).await,
        403,
        "tus-final-not-writable",
    )
    .await;
    for p in &partials {
        assert!(
            !app.object_exists(&format!("tus/partials/{}", id_of(p)))
                .await,
            "assembled partials are deleted"
        );
    }
    let again = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-concat", &concat)
        .send()
        .await
        .unwrap();
    assert_problem(again, 400, "tus-concat-invalid").await;
    let single = app.create(10, "").await;
    let bad = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-concat", format!("final;{single}"))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400, "tus-concat-invalid").await;
}

#[tokio::test]
async fn a_final_upload_created_before_its_partials_finish_is_assembled_when_they_do() {
    let app = spawn_app().await;
    let (a, b) = (data(100, 13), data(200, 14));
    let mut partials = vec![];
    for part in [&a, &b] {
        partials.push(app.create_partial(part.len()).await);
    }
    app.upload_in_chunks(&partials[0], &a, &[usize::MAX]).await;
    let res = app
        .tus(Method::POST, "/api/v1/uploads")
        .header(
            "upload-concat",
            format!("final;{} {}", partials[0], partials[1]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let path = location(&res);
    let head = app.head(&path).await;
    assert!(
        head.headers().get("upload-offset").is_none(),
        "an unfinished final has no offset"
    );
    assert_eq!(header(head.headers(), "upload-length"), "300");
    app.upload_in_chunks(&partials[1], &b, &[usize::MAX]).await;
    let head = app.head(&path).await;
    assert_eq!(header(head.headers(), "upload-offset"), "300");
    assert!(head.headers().get("link").is_some());
    let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
    assert_eq!(
        app.object_sha256(&format!("sources/{}", id_of(&path)))
            .await
            .unwrap(),
        sha256_hex(&whole)
    );
}

#[tokio::test]
async fn an_expired_upload_answers_410_and_the_sweeper_reclaims_its_multipart_upload() {
    let mut tus: TusSettings = test_settings();
    tus.expiry = shared::configuration::Seconds(Duration::from_secs(2));
    let app = spawn_app_with(tus).await;
    let path = app.create(12 * MIB, "").await;
    app.patch(&path, 0, data(6 * MIB, 15)).await;
    assert_eq!(app.open_multipart_uploads().await, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Either the sweeper has already reclaimed it (404) or it is expired (410).
    let status = app.patch(&path, 6 * MIB, vec![1]).await.status().as_u16();
    assert!(status == 410 || status == 404, "{status}");
    app.eventually("the sweeper reclaims the upload", async || {
        app.head(&path).await.status() == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(app.open_multipart_uploads().await, 0);
    assert!(
        !app.object_exists(&format!("tus/tails/{}", id_of(&path)))
            .await
    );
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 0);
}

#[tokio::test]
async fn two_replicas_never_write_one_upload_at_once() {
    let first = spawn_app().await;
    let second = spawn_replica(&first, test_settings()).await;
    let path = first.create(10 * MIB, "").await;
    // A slow writer on the first replica: headers and a few bytes, then silence.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", first.port))
        .await
        .unwrap();
    let req = first.patch_head(&path, 0, "Content-Length: 1000\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &[7u8; 10])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_problem(
        second.patch(&path, 0, vec![1; 10]).await,
        423,
        "tus-upload-locked",
    )
    .await;
    drop(s);
    second
        .eventually("the cut writer releases the lock", async || {
            second.offset(&path).await == 10
        })
        .await;
    assert_eq!(
        second.patch(&path, 10, vec![1; 10]).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_whole_file_checksum_mismatch_refuses_the_upload_and_stores_no_video() {
    let app = spawn_app().await;
    let body = data(1000, 16);
    let wrong = {
        use sha2::Digest;
        sha2::Sha256::digest(b"something else").to_vec()
    };
    let meta = format!(
        "checksum {}",
        b64(format!("sha256 {}", b64(&wrong)).as_bytes())
    );
    let path = app.create(body.len(), &meta).await;
    assert_problem(
        app.patch(&path, 0, body).await,
        460,
        "tus-file-checksum-mismatch",
    )
    .await;
    // HEAD answers carry no body; the status and problem type still say why.
    let head = app.head(&path).await;
    assert_eq!(head.status(), StatusCode::GONE);
    assert_eq!(header(head.headers(), "content-type"), "application/problem+json");
    assert_eq!(app.scalar("SELECT count(*) FROM videos").await, 0);
    assert!(
        !app.object_exists(&format!("sources/{}", id_of(&path)))
            .await
    );

    let good = data(1000, 17);
    let meta = format!(
        "checksum {}",
        b64(format!(
            "sha256 {}",
            b64(&{
                use sha2::Digest;
                sha2::Sha256::digest(&good).to_vec()
            })
        )
        .as_bytes())
    );
    let path = app.create(good.len(), &meta).await;
    assert_eq!(
        app.patch(&path, 0, good).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.scalar("SELECT count(*) FROM videos").await, 1);
}

#[tokio::test]
async fn the_events_stream_reports_progress_and_ends_with_the_video() {
    let app = spawn_app().await;
    let body = data(2000, 18);
    let path = app.create(body.len(), "").await;
    app.patch(&path, 0, body[..500].to_vec()).await;
    let res = app
        .client
        .get(app.url(&format!("{path}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(res.headers(), "content-type"), "text/event-stream");
    let reader = tokio::spawn(async move { res.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.patch(&path, 500, body[500..].to_vec()).await;
    let text = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("stream ends after completion")
        .unwrap();
    assert!(
        text.contains("event: progress") && text.contains("\"offset\":500"),
        "{text}"
    );
    assert!(
        text.contains("event: complete")
            && text.contains(&format!("/api/v1/videos/{}", id_of(&path))),
        "{text}"
    );
    assert_problem(
        app.client
            .get(app.url("/api/v1/uploads/0192f000-0000-7000-8000-000000000000/events"))
            .send()
            .await
            .unwrap(),
        404,
        "tus-upload-not-found",
    )
    .await;
}

/// The value of an unlabelled series (besides `service`) at `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split(['{', ' ']).next() == Some(name)).unwrap_or_else(|| panic!("no {name} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Issue 11: watchers of one upload share one poller, and each sees the end.
#[tokio::test]
async fn three_hundred_watchers_of_one_upload_share_one_poller() {
    const SUBSCRIBERS: usize = 300;
    let app = spawn_app().await;
    let body = data(2000, 19);
    let path = app.create(body.len(), "").await;
    app.patch(&path, 0, body[..500].to_vec()).await;
    // HTTP/2 streams, 100 per connection (hyper serves 200 at most per connection).
    let clients: Vec<reqwest::Client> =
        (0..3).map(|_| reqwest::Client::builder().http2_prior_knowledge().default_headers(shared::testing::bearer(&app.key)).build().unwrap()).collect();
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..SUBSCRIBERS {
        let request = clients[i % clients.len()].get(app.url(&format!("{path}/events")));
        readers.spawn(async move { request.send().await.unwrap().text().await.unwrap() });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&app, "sse_subscribers").await < SUBSCRIBERS as f64 {
        assert!(std::time::Instant::now() < deadline, "subscribers did not all connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&app, "sse_watchers").await, 1.0);
    app.patch(&path, 500, body[500..].to_vec()).await;
    let all = tokio::time::timeout(Duration::from_secs(30), readers.join_all()).await.expect("every stream ends after completion");
    for text in &all {
        assert!(text.contains("event: complete") && text.contains(&format!("/api/v1/videos/{}", id_of(&path))), "{text}");
    }
    app.eventually("the watcher to end", async || metric(&app, "sse_watchers").await == 0.0 && metric(&app, "sse_subscribers").await == 0.0).await;
}
