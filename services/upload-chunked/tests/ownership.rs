//! Issue 12: who may do what with a tus upload, against the real app.
//!
//! - Creation needs a key: none, a malformed one or a revoked one is 401
//!   problem+json with a Bearer challenge, and nothing is stored (no row,
//!   no S3 object, no multipart upload).
//! - Every later operation (HEAD, PATCH, DELETE, the events stream) is the
//!   owner's or an admin's; another creator gets the very answer an unknown
//!   upload gets, and changes nothing. A final upload may only name the
//!   caller's own partials.
//! - The video an upload becomes has the upload's owner and the visibility
//!   its metadata asked for.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use shared::auth::{KeyStore, Role};
use shared::configuration::Seconds;
use shared::testing::World;
use shared::videos::{Videos, Visibility};
use uuid::Uuid;

const UNKNOWN: &str = "/api/v1/uploads/0192f000-0000-7000-8000-000000000000";

/// Rows in `uploads`, objects in the world's bucket, open multipart uploads.
async fn stored(app: &TestApp) -> (i64, usize, usize) {
    let store = app.world.backends.s3.store();
    (
        app.scalar("SELECT count(*) FROM uploads").await,
        store.list_keys("").await.unwrap().len(),
        store.open_multipart_uploads("").await.unwrap().len(),
    )
}

async fn assert_unauthorized(res: Response, code: &str) {
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    assert!(challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")), "no Bearer challenge: {challenge:?}");
    assert_problem(res, 401, code).await;
}

/// A creation that would store bytes at once (creation-with-upload).
fn create_with_bytes(app: &TestApp, client: &reqwest::Client) -> reqwest::RequestBuilder {
    app.tus_as(client, Method::POST, "/api/v1/uploads")
        .header("upload-length", "100")
        .header("content-type", "application/offset+octet-stream")
        .body(vec![1u8; 100])
}

fn anonymous() -> reqwest::Client {
    reqwest::Client::new()
}

fn bearer(raw: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {raw}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// Status and body, for comparing two answers.
async fn answer(res: Response) -> (StatusCode, Value) {
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn creation_without_a_key_or_with_a_malformed_or_unknown_one_is_401_and_stores_nothing() {
    let app = spawn_app().await;
    assert_eq!(stored(&app).await, (0, 0, 0));

    assert_unauthorized(create_with_bytes(&app, &anonymous()).send().await.unwrap(), "api-key-required").await;
    let deferred = app.tus_as(&anonymous(), Method::POST, "/api/v1/uploads").header("upload-defer-length", "1").send().await.unwrap();
    assert_unauthorized(deferred, "api-key-required").await;
    assert_unauthorized(create_with_bytes(&app, &bearer("not-a-key")).send().await.unwrap(), "api-key-malformed").await;
    let unknown = shared::auth::ApiKey::generate();
    assert_unauthorized(create_with_bytes(&app, &keyed(&unknown)).send().await.unwrap(), "api-key-invalid").await;
    // Asking for a bad visibility without a key is still a 401 first.
    let res = create_with_bytes(&app, &anonymous()).header("upload-metadata", format!("visibility {}", b64(b"secret"))).send().await.unwrap();
    assert_unauthorized(res, "api-key-required").await;

    assert_eq!(stored(&app).await, (0, 0, 0), "a refused creation leaves no row, object or multipart upload");
    // Discovery and CORS preflights stay open: browsers send no key on them.
    let options = app.client_anonymous_options("/api/v1/uploads", false).await;
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(options.headers(), "tus-version"), "1.0.0");
    let preflight = app.client_anonymous_options("/api/v1/uploads", true).await;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert!(header(preflight.headers(), "access-control-allow-headers").to_ascii_lowercase().contains("authorization"));
}

#[tokio::test]
async fn operations_on_an_upload_need_a_key() {
    let app = spawn_app().await;
    let path = app.create(100, "").await;
    let none = anonymous();
    assert_eq!(app.tus_as(&none, Method::HEAD, &path).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let patch = app.tus_as(&none, Method::PATCH, &path).header("upload-offset", "0").header("content-type", "application/offset+octet-stream").body(vec![1u8; 10]);
    assert_unauthorized(patch.send().await.unwrap(), "api-key-required").await;
    assert_unauthorized(app.tus_as(&none, Method::DELETE, &path).send().await.unwrap(), "api-key-required").await;
    assert_unauthorized(none.get(app.url(&format!("{path}/events"))).send().await.unwrap(), "api-key-required").await;
    // Even for ids that cannot exist: nothing is said without a key.
    assert_unauthorized(app.tus_as(&none, Method::DELETE, "/api/v1/uploads/nope").send().await.unwrap(), "api-key-required").await;
    assert_eq!(app.offset(&path).await, 0);
}

#[tokio::test]
async fn another_creators_key_gets_the_answer_of_a_missing_upload_and_changes_nothing() {
    let app = spawn_app().await;
    let (other_key, _) = app.world.api_key(Role::Creator).await;
    let other = keyed(&other_key);
    let path = app.create(1000, "").await;
    assert_eq!(app.patch(&path, 0, data(300, 1)).await.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.tus(Method::HEAD, UNKNOWN).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let head = app.tus_as(&other, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert!(head.headers().get("upload-offset").is_none());

    let patch = |p: &str| {
        app.tus_as(&other, Method::PATCH, p).header("upload-offset", "300").header("content-type", "application/offset+octet-stream").body(data(700, 2))
    };
    let unknown_patch = answer(patch(UNKNOWN).send().await.unwrap()).await;
    assert_eq!(unknown_patch.0, StatusCode::NOT_FOUND);
    assert_eq!(answer(patch(&path).send().await.unwrap()).await, unknown_patch);

    let unknown_delete = answer(app.tus_as(&other, Method::DELETE, UNKNOWN).send().await.unwrap()).await;
    assert_eq!(answer(app.tus_as(&other, Method::DELETE, &path).send().await.unwrap()).await, unknown_delete);

    let events = |p: &str| other.get(app.url(&format!("{p}/events"))).send();
    let unknown_events = answer(events(UNKNOWN).await.unwrap()).await;
    assert_eq!(unknown_events.0, StatusCode::NOT_FOUND);
    assert_eq!(answer(events(&path).await.unwrap()).await, unknown_events);

    // The owner's upload is untouched, and still the owner's to finish.
    assert_eq!(app.offset(&path).await, 300);
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 1);
    assert_eq!(app.patch(&path, 300, data(700, 3)).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_final_upload_may_name_only_the_callers_own_partials() {
    let app = spawn_app().await;
    let (other_key, _) = app.world.api_key(Role::Creator).await;
    let (admin_key, _) = app.world.api_key(Role::Admin).await;
    let mine = app.create_partial(10).await;
    let final_of = |client: &reqwest::Client, partials: &[&str]| {
        app.tus_as(client, Method::POST, "/api/v1/uploads").header("upload-concat", format!("final;{}", partials.join(" "))).send()
    };
    let refusal = |id: &str| format!("partial upload {id} does not exist; nothing was created.");
    let before = app.scalar("SELECT count(*) FROM uploads").await;

    // Another creator naming my partial hears what it would for an unknown one.
    for (who, client) in [("another creator", keyed(&other_key)), ("an admin", keyed(&admin_key))] {
        let (status, body) = answer(final_of(&client, &[mine.as_str()]).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{who}: {body}");
        assert_eq!(body["code"], "tus-concat-invalid", "{who}: {body}");
        assert_eq!(body["detail"], refusal(id_of(&mine)), "{who}: {body}");
    }
    let (_, unknown) = answer(final_of(&keyed(&other_key), &[UNKNOWN]).await.unwrap()).await;
    assert_eq!(unknown["detail"], refusal(id_of(UNKNOWN)));
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, before, "no final was created");

    // Mine alone, or mixed with someone else's, by me.
    let theirs = {
        let res = app.tus_as(&keyed(&other_key), Method::POST, "/api/v1/uploads").header("upload-length", "10").header("upload-concat", "partial").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        location(&res)
    };
    let (status, body) = answer(final_of(&app.client, &[mine.as_str(), theirs.as_str()]).await.unwrap()).await;
    assert_eq!((status, body["detail"].clone()), (StatusCode::BAD_REQUEST, refusal(id_of(&theirs)).into()));
    assert_eq!(final_of(&app.client, &[mine.as_str()]).await.unwrap().status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_admin_may_act_on_any_upload() {
    let app = spawn_app().await;
    let (admin_key, _) = app.world.api_key(Role::Admin).await;
    let admin = keyed(&admin_key);
    let path = app.create(1000, "").await;
    assert_eq!(app.patch(&path, 0, data(400, 4)).await.status(), StatusCode::NO_CONTENT);

    let head = app.tus_as(&admin, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(head.headers(), "upload-offset"), "400");
    let patch = app.tus_as(&admin, Method::PATCH, &path).header("upload-offset", "400").header("content-type", "application/offset+octet-stream").body(data(100, 5));
    assert_eq!(patch.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let events = admin.get(app.url(&format!("{path}/events"))).send().await.unwrap();
    assert_eq!(header(events.headers(), "content-type"), "text/event-stream");
    drop(events);
    assert_eq!(app.tus_as(&admin, Method::DELETE, &path).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(app.head(&path).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_ttl() {
    let world = World::new().await;
    let mut settings = settings_in(&world, test_settings());
    settings.auth.cache_ttl = Seconds(Duration::from_secs(1));
    let (key, principal) = world.api_key(Role::Creator).await;
    let app = start(world, settings, key, principal).await;
    let path = app.create(100, "").await;
    assert_eq!(app.head(&path).await.status(), StatusCode::OK, "the key works (and its lookup is cached)");

    revoke_all(&app).await;
    app.eventually("the revoked key to be refused", async || app.head(&path).await.status() == StatusCode::UNAUTHORIZED).await;
    assert_unauthorized(app.client.get(app.url(&format!("{path}/events"))).send().await.unwrap(), "api-key-invalid").await;
    assert_unauthorized(create_with_bytes(&app, &app.client).send().await.unwrap(), "api-key-invalid").await;
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 1);
}

#[tokio::test]
async fn without_a_key_cache_a_revoked_key_is_refused_on_the_next_request() {
    let world = World::new().await;
    let mut settings = settings_in(&world, test_settings());
    settings.auth.cache_ttl = Seconds(Duration::ZERO);
    let (key, principal) = world.api_key(Role::Creator).await;
    let app = start(world, settings, key, principal).await;
    let path = app.create(100, "").await;
    revoke_all(&app).await;
    assert_eq!(app.head(&path).await.status(), StatusCode::UNAUTHORIZED);
    assert_unauthorized(app.client.get(app.url(&format!("{path}/events"))).send().await.unwrap(), "api-key-invalid").await;
}

async fn revoke_all(app: &TestApp) {
    let keys = KeyStore::new(app.world.backends.database.pool().unwrap());
    for k in keys.list(Some(app.principal)).await.unwrap() {
        assert!(keys.revoke(k.id, None).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_completed_upload_becomes_a_video_with_the_uploads_owner_and_visibility() {
    let app = spawn_app().await;
    let videos = Videos::new(app.world.backends.database.pool().unwrap());
    let body = data(2000, 6);

    let private = app.create(body.len(), &format!("filename {},visibility {}", b64(b"a.mp4"), b64(b"private"))).await;
    app.upload_in_chunks(&private, &body, &[700]).await;
    let v = videos.get(Uuid::parse_str(id_of(&private)).unwrap()).await.unwrap().expect("a video");
    assert_eq!((v.owner_id, v.visibility), (Some(app.principal), Visibility::Private));

    let public = app.create(body.len(), "").await;
    app.upload_in_chunks(&public, &body, &[2000]).await;
    let v = videos.get(Uuid::parse_str(id_of(&public)).unwrap()).await.unwrap().expect("a video");
    assert_eq!((v.owner_id, v.visibility), (Some(app.principal), Visibility::Public), "public unless asked otherwise");

    // Concatenated: the final's owner and visibility.
    let (a, b) = (app.create_partial(1000).await, app.create_partial(1000).await);
    let fin = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-concat", format!("final;{a} {b}"))
        .header("upload-metadata", format!("visibility {}", b64(b"unlisted")))
        .send()
        .await
        .unwrap();
    assert_eq!(fin.status(), StatusCode::CREATED);
    let fin = location(&fin);
    app.patch(&a, 0, body[..1000].to_vec()).await;
    app.patch(&b, 0, body[1000..].to_vec()).await;
    let id = Uuid::parse_str(id_of(&fin)).unwrap();
    app.eventually("the final upload to become a video", async || videos.get(id).await.unwrap().is_some()).await;
    let v = videos.get(id).await.unwrap().unwrap();
    assert_eq!((v.owner_id, v.visibility), (Some(app.principal), Visibility::Unlisted));
}

#[tokio::test]
async fn a_visibility_that_is_not_public_unlisted_or_private_is_400_and_stores_nothing() {
    let app = spawn_app().await;
    for bad in [&b"secret"[..], &b"Private "[..], &b""[..], &b"\xff"[..]] {
        let meta = if bad.is_empty() { "visibility".to_owned() } else { format!("visibility {}", b64(bad)) };
        let res = create_with_bytes(&app, &app.client).header("upload-metadata", meta).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "tus-visibility-invalid", "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(["public", "unlisted", "private"].iter().all(|v| detail.contains(v)), "names the allowed values: {detail}");
    }
    assert_eq!(stored(&app).await, (0, 0, 0));
}

fn id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

impl TestApp {
    /// OPTIONS with no key: tus discovery, or a browser's CORS preflight.
    async fn client_anonymous_options(&self, path: &str, preflight: bool) -> Response {
        let mut req = anonymous().request(Method::OPTIONS, self.url(path));
        if preflight {
            req = req
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization, tus-resumable, upload-length");
        }
        req.send().await.unwrap()
    }
}
