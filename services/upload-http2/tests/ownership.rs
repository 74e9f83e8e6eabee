//! Keys, ownership and visibility in upload-http2 against the real
//! services (issue 12): who may upload, see, change and delete a video, the
//! key API, and the purge a deletion sends to the edges.

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::auth::{ApiKey, Role};
use shared::testing::{bearer, World};
use upload_http2::configuration::Settings;
use upload_http2::startup;

struct App {
    base: String,
    world: World,
}

async fn spawn(overrides: &[(&str, &str)]) -> App {
    let world = World::new().await;
    let mut env = world.env_with(overrides);
    let settings = Settings::from_env(&mut env);
    env.finish().expect("test settings");
    let app = startup::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    App { base, world }
}

fn client(key: Option<&ApiKey>) -> reqwest::Client {
    let headers = key.map(bearer).unwrap_or_default();
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

impl App {
    async fn upload(&self, key: Option<&ApiKey>, query: &str) -> reqwest::Response {
        client(key).post(format!("{}/api/v1/videos?title=t&{query}", self.base)).header("content-type", "video/mp4").body(vec![9u8; 4096]).send().await.unwrap()
    }

    async fn rows(&self) -> i64 {
        let pool = self.world.backends.database.pool().unwrap();
        sqlx::query_scalar("SELECT count(*) FROM videos").fetch_one(&pool).await.unwrap()
    }
}

async fn problem(r: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], code);
}

#[tokio::test]
async fn uploading_needs_a_key_and_a_refused_upload_stores_nothing() {
    let app = spawn(&[]).await;
    let r = app.upload(None, "").await;
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    problem(r, StatusCode::UNAUTHORIZED, "api-key-required").await;
    let r = client(None).post(format!("{}/api/v1/videos", app.base)).header("authorization", "Bearer nope").header("content-type", "video/mp4").body(vec![1u8; 100]).send().await.unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "api-key-malformed").await;
    let r = app.upload(Some(&ApiKey::generate()), "").await;
    problem(r, StatusCode::UNAUTHORIZED, "api-key-invalid").await;
    assert_eq!(app.rows().await, 0);
    assert!(app.world.backends.s3.store().list_keys("sources/").await.unwrap().is_empty());
    assert!(app.world.backends.s3.store().open_multipart_uploads("").await.unwrap().is_empty());
    let (key, me) = app.world.api_key(Role::Creator).await;
    let r = app.upload(Some(&key), "visibility=secret").await;
    problem(r, StatusCode::BAD_REQUEST, "invalid-field").await;
    let r = app.upload(Some(&key), "visibility=unlisted").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["visibility"].as_str(), v["owner_id"].as_str()), (Some("unlisted"), Some(me.to_string().as_str())));
}

#[tokio::test]
async fn others_get_404_for_private_videos_owners_and_admins_act_and_anonymous_callers_read_public_ones() {
    let app = spawn(&[]).await;
    let (owner, _) = app.world.api_key(Role::Creator).await;
    let (other, _) = app.world.api_key(Role::Creator).await;
    let (admin, _) = app.world.api_key(Role::Admin).await;
    let private: Value = app.upload(Some(&owner), "visibility=private").await.json().await.unwrap();
    let public: Value = app.upload(Some(&owner), "").await.json().await.unwrap();
    let (private, public) = (private["id"].as_str().unwrap().to_owned(), public["id"].as_str().unwrap().to_owned());
    let url = |id: &str| format!("{}/api/v1/videos/{id}", app.base);

    let get = |key: Option<&ApiKey>, id: &str| client(key).get(url(id)).send();
    assert_eq!(get(Some(&owner), &private).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(Some(&admin), &private).await.unwrap().status(), StatusCode::OK);
    let missing = get(Some(&other), &uuid::Uuid::now_v7().to_string()).await.unwrap().json::<Value>().await.unwrap();
    let hidden = get(Some(&other), &private).await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let hidden = hidden.json::<Value>().await.unwrap();
    assert_eq!((hidden["code"].clone(), hidden["title"].clone()), (missing["code"].clone(), missing["title"].clone()), "a hidden video looks like a missing one");
    assert_eq!(get(None, &private).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get(None, &public).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(Some(&other), &public).await.unwrap().status(), StatusCode::OK);
    assert_eq!(client(Some(&other)).get(format!("{}/events", url(&private))).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // Changing visibility: owner or admin; others 404 even on a public video; nobody 401.
    let patch = |key: Option<&ApiKey>, id: &str, body: Value| client(key).patch(url(id)).json(&body).send();
    assert_eq!(patch(None, &public, json!({"visibility": "private"})).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(patch(Some(&other), &public, json!({"visibility": "private"})).await.unwrap().status(), StatusCode::NOT_FOUND);
    problem(patch(Some(&owner), &public, json!({"visibility": "hidden"})).await.unwrap(), StatusCode::BAD_REQUEST, "invalid-field").await;
    problem(patch(Some(&owner), &public, json!({"title": "x"})).await.unwrap(), StatusCode::BAD_REQUEST, "invalid-field").await;
    let changed: Value = patch(Some(&owner), &public, json!({"visibility": "unlisted"})).await.unwrap().json().await.unwrap();
    assert_eq!(changed["visibility"], "unlisted");
    let changed: Value = patch(Some(&admin), &public, json!({"visibility": "public"})).await.unwrap().json().await.unwrap();
    assert_eq!(changed["visibility"], "public");

    // Deleting: others 404 and the video stays; the owner deletes.
    assert_eq!(client(None).delete(url(&private)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client(Some(&other)).delete(url(&private)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get(Some(&owner), &private).await.unwrap().status(), StatusCode::OK);
    assert_eq!(client(Some(&owner)).delete(url(&private)).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(client(Some(&admin)).delete(url(&public)).send().await.unwrap().status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn deleting_a_video_publishes_its_purge_to_the_edges_before_answering() {
    let app = spawn(&[]).await;
    let (owner, _) = app.world.api_key(Role::Creator).await;
    let id = app.upload(Some(&owner), "").await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let redis = app.world.backends.redis.cache().unwrap();
    let mut sub = redis.pubsub().await.unwrap();
    sub.subscribe(shared::purge::channel(&redis)).await.unwrap();
    let r = client(Some(&owner)).delete(format!("{}/api/v1/videos/{id}", app.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), sub.on_message().next()).await.expect("a purge was published").unwrap();
    let published: shared::purge::Published = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(published.purge, shared::purge::PurgeRequest::video(id.parse().unwrap()));
}

#[tokio::test]
async fn the_key_api_creates_lists_and_revokes_and_a_revoked_key_stops_at_once_on_this_replica() {
    let app = spawn(&[]).await;
    let (admin, _) = app.world.api_key(Role::Admin).await;
    let keys = format!("{}/api/v1/keys", app.base);
    let r = client(Some(&admin)).post(&keys).json(&json!({"label": "alice"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    let alice = ApiKey::parse(made["key"].as_str().unwrap()).expect("a well-formed key");
    assert_eq!((made["role"].as_str(), made["label"].as_str()), (Some("creator"), Some("alice")));

    // A creator adds a key to itself, may not mint admins, and lists only its own.
    let r = client(Some(&alice)).post(&keys).json(&json!({"label": "laptop"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["principal_id"], made["principal_id"]);
    problem(client(Some(&alice)).post(&keys).json(&json!({"role": "admin"})).send().await.unwrap(), StatusCode::FORBIDDEN, "admin-required").await;
    problem(client(Some(&alice)).post(&keys).json(&json!({"label": "x", "owner": "y"})).send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid-key-request").await;
    let listed: Value = client(Some(&alice)).get(&keys).send().await.unwrap().json().await.unwrap();
    let listed = listed["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.get("key").is_none() && k["prefix"].as_str().unwrap().starts_with("vpk_")), "{listed:?}");
    let all: Value = client(Some(&admin)).get(&keys).send().await.unwrap().json().await.unwrap();
    assert!(all["keys"].as_array().unwrap().len() >= 3);

    // Another creator cannot revoke alice's key; alice can, and it stops at once here.
    let (bob, _) = app.world.api_key(Role::Creator).await;
    let first_id = made["id"].as_str().unwrap();
    assert_eq!(client(Some(&bob)).delete(format!("{keys}/{first_id}")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(client(Some(&alice)).get(&keys).send().await.unwrap().status(), StatusCode::OK, "cached as valid");
    assert_eq!(client(Some(&alice)).delete(format!("{keys}/{first_id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    problem(client(Some(&alice)).get(&keys).send().await.unwrap(), StatusCode::UNAUTHORIZED, "api-key-invalid").await;
    let laptop = ApiKey::parse(second["key"].as_str().unwrap()).unwrap();
    assert_eq!(client(Some(&laptop)).get(&keys).send().await.unwrap().status(), StatusCode::OK, "the other key still works");
    problem(client(None).get(&keys).send().await.unwrap(), StatusCode::UNAUTHORIZED, "api-key-required").await;
}

#[tokio::test]
async fn the_bootstrap_admin_key_is_stored_at_start_and_works() {
    let key = ApiKey::generate();
    let app = spawn(&[("ADMIN_API_KEY", key.expose())]).await;
    let r = client(Some(&key)).post(format!("{}/api/v1/keys", app.base)).json(&json!({"role": "admin", "label": "second admin"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Outside dev an admin key is required, and example secrets are refused.
    let mut env = app.world.env_with(&[("PLATFORM_ENV", "production")]);
    let _ = Settings::from_env(&mut env);
    let err = env.finish().unwrap_err().to_string();
    assert!(err.contains("ADMIN_API_KEY or ADMIN_API_KEY_FILE must be set"), "{err}");
}
