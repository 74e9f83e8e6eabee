//! Hostile and overloaded clients against the real services: trickling
//! bodies, too-slow and too-long requests, a spent upload budget, a writer
//! whose lease lapsed, and a termination whose S3 abort fails.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use shared::configuration::Seconds;
use shared::rawhttp::{labelled_metric, RawRequest as Raw};
use shared::testing::World;
use tokio::net::{TcpListener, TcpStream};
use upload_chunked::store::rows::{LeaseLost, Rows};
use uuid::Uuid;

/// One series of `name` whose labels include `label`, from the app's /metrics.
async fn gauge(app: &TestApp, name: &str, label: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    labelled_metric(&text, name, label)
}

fn id_of(path: &str) -> Uuid {
    path.rsplit('/').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn sixty_four_trickling_clients_hold_no_connection_and_creates_and_heads_stay_fast() {
    const CLIENTS: usize = 64;
    const PIECES: usize = 10;
    let mut tus = test_settings();
    // The trickle (2 bytes a second) must meet the rate; leases live 3 s, so
    // each is renewed several times during its 10 s body.
    tus.pace.min_bytes_per_sec = 1;
    tus.pace.window = Seconds(Duration::from_secs(4));
    tus.lease_ttl = Seconds(Duration::from_secs(3));
    let mut world = World::new().await;
    // A pool far smaller than the crowd: a connection held per body would starve it.
    world.backends.database.max_connections = 8;
    let app = spawn_in(world, tus).await;

    let mut paths = Vec::new();
    for _ in 0..CLIENTS {
        paths.push(app.create(2 * PIECES, "").await);
    }
    let mut clients = Vec::new();
    for path in &paths {
        let mut raw = Raw::open(app.port, &app.patch_head(path, 0, &format!("Content-Length: {}\r\n", 2 * PIECES))).await;
        clients.push(tokio::spawn(async move {
            for i in 0..PIECES {
                assert!(raw.send(&[i as u8, i as u8]).await, "server closed a trickling PATCH");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            raw.answer().await
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.scalar("SELECT count(*) FROM uploads WHERE lease_holder IS NOT NULL").await, CLIENTS as i64, "every trickling PATCH holds its lease");
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let started = Instant::now();
        let path = app.create(100, "").await;
        assert_eq!(app.offset(&path).await, 0);
        slowest = slowest.max(started.elapsed());
        // A connection idle in a transaction is one a body would be holding.
        assert_eq!(
            app.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'").await,
            0
        );
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rounds >= 5, "only {rounds} create+HEAD rounds in 6 s");
    assert!(slowest < Duration::from_secs(1), "a create + HEAD took {slowest:?} while bodies trickled");

    for (client, path) in clients.into_iter().zip(&paths) {
        let answer = client.await.unwrap();
        assert_eq!(answer.status, 204, "{}{}", answer.head, answer.body);
        assert_eq!(answer.header("upload-offset").as_deref(), Some("20"));
        assert_eq!(app.offset(path).await, 2 * PIECES);
    }
    assert_eq!(app.scalar("SELECT count(*) FROM uploads WHERE lease_holder IS NOT NULL").await, 0, "every lease was given back");
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_is_cut_off_with_408_and_keeps_only_stored_bytes() {
    let mut tus = test_settings();
    tus.pace.min_bytes_per_sec = 1000;
    tus.pace.window = Seconds(Duration::from_secs(1));
    let app = spawn_app_with(tus).await;
    let body = data(10_000, 21);
    let path = app.create(body.len(), "").await;

    let mut raw = Raw::open(app.port, &app.patch_head(&path, 0, "Content-Length: 10000\r\n")).await;
    raw.send(&body[..300]).await;
    // Then silence: 300 bytes in the first second is below 1000 bytes/s.
    let answer = raw.answer().await;
    assert_eq!(answer.status, 408, "{}{}", answer.head, answer.body);
    assert_eq!(answer.header("content-type").as_deref(), Some("application/problem+json"));
    let problem = answer.json();
    assert_eq!(problem["code"], "tus-upload-too-slow", "{problem}");
    assert_eq!(problem["upload_offset"], 300);
    assert!(problem["detail"].as_str().unwrap().contains("1000 bytes/s"), "{problem}");
    assert_eq!(app.offset(&path).await, 300);

    // What was stored is exactly the first 300 bytes: the rest completes the file.
    assert_eq!(app.patch(&path, 300, body[300..].to_vec()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.object_sha256(&format!("sources/{}", id_of(&path))).await.unwrap(), sha256_hex(&body));
    assert_eq!(app.scalar("SELECT count(*) FROM uploads WHERE lease_holder IS NOT NULL").await, 0);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_cut_off_and_its_offset_is_what_was_stored() {
    let mut tus = test_settings();
    tus.pace.deadline = Seconds(Duration::from_secs(2));
    let app = spawn_app_with(tus).await;
    let body = data(100_000, 22);
    let path = app.create(body.len(), "").await;

    let mut raw = Raw::open(app.port, &app.patch_head(&path, 0, "Content-Length: 100000\r\n")).await;
    let mut sent = 0;
    // Steady but endless: 100 bytes every 200 ms would take 200 s.
    for piece in body.chunks(100).take(50) {
        if !raw.send(piece).await {
            break;
        }
        sent += piece.len();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = raw.answer().await;
    assert_eq!(answer.status, 408, "{}{}", answer.head, answer.body);
    let problem = answer.json();
    assert_eq!(problem["code"], "tus-request-deadline", "{problem}");
    let stored = problem["upload_offset"].as_u64().unwrap() as usize;
    assert!(stored > 0 && stored <= sent, "stored {stored} of {sent} sent");
    assert_eq!(app.offset(&path).await, stored);
    assert_eq!(app.patch(&path, stored, body[stored..].to_vec()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.object_sha256(&format!("sources/{}", id_of(&path))).await.unwrap(), sha256_hex(&body));
}

#[tokio::test]
async fn with_a_budget_of_two_uploads_the_third_gets_503_with_retry_after_and_the_gauge_returns_to_zero() {
    let mut tus = test_settings();
    tus.budget.max_uploads = 2;
    let app = spawn_app_with(tus).await;
    let uploads = [app.create(100, "").await, app.create(100, "").await, app.create(100, "").await];

    let mut slow = Vec::new();
    for path in &uploads[..2] {
        let mut raw = Raw::open(app.port, &app.patch_head(path, 0, "Content-Length: 100\r\n")).await;
        raw.send(&[1; 10]).await;
        slow.push(raw);
    }
    app.eventually("both slow PATCHes are admitted", async || gauge(&app, "upload_budget_in_use", "resource=\"uploads\"").await == 2.0).await;

    let res = app.patch(&uploads[2], 0, vec![3; 100]).await;
    assert_eq!(header(res.headers(), "retry-after"), "5");
    assert_problem(res, 503, "upload-capacity-exhausted").await;
    // Creation-with-upload is refused before its row exists.
    let rows_before = app.scalar("SELECT count(*) FROM uploads").await;
    let res = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-length", 5)
        .header("content-type", "application/offset+octet-stream")
        .body(vec![1u8; 5])
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "upload-capacity-exhausted").await;
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, rows_before);
    assert_eq!(gauge(&app, "upload_budget_refusals_total", "resource=\"uploads\"").await, 2.0);

    for mut raw in slow {
        raw.send(&[2; 90]).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 204, "{}{}", answer.head, answer.body);
    }
    app.eventually("the budget is given back", async || {
        gauge(&app, "upload_budget_in_use", "resource=\"uploads\"").await == 0.0 && gauge(&app, "upload_budget_in_use", "resource=\"bytes\"").await == 0.0
    })
    .await;
    assert_eq!(app.patch(&uploads[2], 0, vec![3; 100]).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_crashed_writers_lease_expires_and_a_lapsed_lease_cannot_write() {
    let app = spawn_app().await;
    let path = app.create(10, "").await;
    let id = id_of(&path);
    let rows = Rows::new(app.world.backends.database.pool().unwrap());
    // A writer that took the lease and died: nothing renews or releases it.
    let crashed = Uuid::new_v4();
    assert_eq!(rows.take_lease(id, crashed, Duration::from_secs(2)).await.unwrap(), upload_chunked::store::rows::Taken::Yes);
    assert_problem(app.patch(&path, 0, vec![1; 5]).await, 423, "tus-upload-locked").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.patch(&path, 0, vec![1; 5]).await.status(), StatusCode::NO_CONTENT);
    // The crashed writer's token no longer fences anything in.
    let err = rows.set_length(id, crashed, 10).await.unwrap_err();
    assert!(err.downcast_ref::<LeaseLost>().is_some(), "{err:#}");
    assert_eq!(app.offset(&path).await, 5);
}

/// A loopback TCP proxy to S3 that the test can cut: while off it refuses
/// new connections and severs open ones, as an unreachable S3 would.
async fn s3_proxy(endpoint: &str) -> (String, tokio::sync::watch::Sender<bool>) {
    let target = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (on, watch) = tokio::sync::watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut watch = watch.clone();
            if !*watch.borrow() {
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = watch.wait_for(|on| !on) => {}
                }
            });
        }
    });
    (format!("http://{addr}"), on)
}

#[tokio::test]
async fn a_termination_whose_abort_fails_keeps_the_row_until_a_retry_frees_the_bytes() {
    let mut world = World::new().await;
    let direct = world.backends.s3.store();
    let (endpoint, s3_on) = s3_proxy(&world.backends.s3.endpoint).await;
    world.backends.s3.endpoint = endpoint;
    let app = spawn_in(world, test_settings()).await;
    let path = app.create(12 * MIB, "").await;
    assert_eq!(app.patch(&path, 0, data(6 * MIB, 23)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(direct.open_multipart_uploads("").await.unwrap().len(), 1);

    s3_on.send_replace(false);
    let res = app.tus(Method::DELETE, &path).send().await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "tus-termination-failed").await;
    // Kept, whole and usable: the row is still the record of the S3 upload.
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 1);
    assert_eq!(direct.open_multipart_uploads("").await.unwrap().len(), 1);
    s3_on.send_replace(true);
    assert_eq!(app.offset(&path).await, 6 * MIB);

    let res = app.tus(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 0);
    assert_eq!(direct.open_multipart_uploads("").await.unwrap().len(), 0);
    assert!(!app.object_exists(&format!("tus/tails/{}", id_of(&path))).await);
}

#[tokio::test]
async fn a_termination_after_the_multipart_upload_is_already_gone_succeeds() {
    let app = spawn_app().await;
    let path = app.create(12 * MIB, "").await;
    app.patch(&path, 0, data(6 * MIB, 24)).await;
    let store = app.world.backends.s3.store();
    for (key, upload_id) in store.open_multipart_uploads("").await.unwrap() {
        store.abort_multipart(&key, &upload_id).await.unwrap();
    }
    assert_eq!(app.tus(Method::DELETE, &path).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 0);
}
