//! Identity and ownership across every service (issue 12): a table over
//! every route, each tried with no key, another creator's key, the owner's
//! key and an admin key, against the status it must get. Through the front
//! door for the public API; on their own ports for the operator surfaces,
//! which the front doors do not route at all.

use std::time::Duration;

use e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    Other,
    Owner,
    Admin,
}

const EVERYONE: [Who; 4] = [Who::Nobody, Who::Other, Who::Owner, Who::Admin];

struct Keys {
    owner: String,
    other: String,
    admin: String,
}

impl Keys {
    fn get(&self, who: Who) -> Option<&str> {
        match who {
            Who::Nobody => None,
            Who::Other => Some(&self.other),
            Who::Owner => Some(&self.owner),
            Who::Admin => Some(&self.admin),
        }
    }
}

/// A fresh creator (its own principal) made with the admin key.
async fn new_creator(admin: &reqwest::Client, base: &str, label: &str) -> (String, String) {
    let r = admin.post(format!("{base}/api/v1/keys")).json(&json!({"label": label})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    (v["key"].as_str().unwrap().to_owned(), v["id"].as_str().unwrap().to_owned())
}

async fn status(stack: &Stack, keys: &Keys, who: Who, method: &Method, url: &str, body: Option<(&str, Vec<u8>)>) -> StatusCode {
    let client = stack.client_with(keys.get(who)).unwrap();
    // The tus headers are harmless elsewhere; on a tus PATCH they make the
    // first write (the owner's) land and the admin's repeat conflict.
    let mut req = client.request(method.clone(), url).header("tus-resumable", "1.0.0").header("upload-offset", "0");
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}")).status()
}

/// A private video by the owner, transcoded; returns its id.
async fn private_video(owner: &reqwest::Client, base: &str) -> String {
    let id = ready_clip_visible(owner, base, "private", "private", 3, READY_TIMEOUT).await;
    let v: Value = owner.get(format!("{base}/api/v1/videos/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["encrypted"], true, "{v}");
    id
}

/// A tus upload by the owner (creation only); returns its URL.
async fn tus_upload(owner: &reqwest::Client, base: &str) -> String {
    let r = owner.post(format!("{base}/api/v1/uploads")).header("tus-resumable", "1.0.0").header("upload-length", "10").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    if loc.starts_with("http") { loc } else { format!("{base}{loc}") }
}

#[tokio::test]
async fn every_route_answers_nobody_another_creator_the_owner_and_an_admin_as_it_must() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let base = stack.nginx_http.clone();
    let admin = stack.client_with(Some(&stack.admin_key().unwrap())).unwrap();
    let (owner_key, owner_key_id) = new_creator(&admin, &base, "identity owner").await;
    let (other_key, _) = new_creator(&admin, &base, "identity other").await;
    let keys = Keys { owner: owner_key.clone(), other: other_key, admin: stack.admin_key().unwrap() };
    let owner = stack.client_with(Some(&owner_key)).unwrap();

    let video = private_video(&owner, &base).await;
    let upload = tus_upload(&owner, &base).await;
    let v = format!("{base}/api/v1/videos/{video}");
    let internal_origin = "http://127.0.0.1:8003";
    let internal_worker = "http://127.0.0.1:8021";

    use StatusCode as S;
    let (ok, created, gone, unauth, forbidden, hidden) = (S::OK, S::CREATED, S::NO_CONTENT, S::UNAUTHORIZED, S::FORBIDDEN, S::NOT_FOUND);
    // (method, url, body, [nobody, other creator, owner, admin])
    let patch = || Some(("application/json", br#"{"visibility":"private"}"#.to_vec()));
    let table: Vec<(Method, String, Option<(&str, Vec<u8>)>, [StatusCode; 4])> = vec![
        (Method::GET, format!("{base}/api/v1/videos?limit=5"), None, [ok, ok, ok, ok]),
        (Method::GET, v.clone(), None, [hidden, hidden, ok, ok]),
        (Method::PATCH, v.clone(), patch(), [unauth, hidden, ok, ok]),
        (Method::GET, format!("{v}/events"), None, [hidden, hidden, ok, ok]),
        (Method::GET, format!("{v}/play"), None, [hidden, hidden, ok, ok]),
        (Method::GET, format!("{v}/viewers"), None, [hidden, hidden, ok, ok]),
        (Method::GET, format!("{base}/hls/{video}/master.m3u8"), None, [forbidden, forbidden, forbidden, forbidden]),
        (Method::POST, format!("{base}/api/v1/videos"), Some(("video/mp4", vec![])), [unauth, S::BAD_REQUEST, S::BAD_REQUEST, S::BAD_REQUEST]),
        (Method::HEAD, upload.clone(), None, [unauth, hidden, ok, ok]),
        (Method::GET, format!("{upload}/events"), None, [unauth, hidden, ok, ok]),
        (Method::PATCH, upload.clone(), Some(("application/offset+octet-stream", b"01234".to_vec())), [unauth, hidden, gone, S::CONFLICT]),
        (Method::GET, format!("{base}/api/v1/keys"), None, [unauth, ok, ok, ok]),
        (Method::POST, format!("{base}/api/v1/keys"), Some(("application/json", br#"{"label":"t"}"#.to_vec())), [unauth, created, created, created]),
        (Method::POST, format!("{base}/api/v1/keys"), Some(("application/json", br#"{"role":"admin"}"#.to_vec())), [unauth, forbidden, forbidden, created]),
        (Method::GET, format!("{internal_origin}/api/v1/viewers"), None, [unauth, forbidden, forbidden, ok]),
        (Method::GET, format!("{internal_worker}/admin/dead-jobs"), None, [unauth, forbidden, forbidden, ok]),
    ];
    let mut wrong = Vec::new();
    for (method, url, body, want) in &table {
        for (who, want) in EVERYONE.iter().zip(want) {
            let got = status(&stack, &keys, *who, method, url, body.clone()).await;
            if got != *want {
                wrong.push(format!("{method} {url} as {who:?}: {got}, want {want}"));
            }
        }
    }
    // Destructive ones last, each on a resource of its own.
    for (who, want) in [(Who::Nobody, unauth), (Who::Other, hidden), (Who::Owner, gone)] {
        let target = tus_upload(&owner, &base).await;
        let got = status(&stack, &keys, who, &Method::DELETE, &target, None).await;
        if got != want {
            wrong.push(format!("DELETE tus upload as {who:?}: {got}, want {want}"));
        }
    }
    for (who, want) in [(Who::Nobody, unauth), (Who::Other, hidden), (Who::Owner, gone)] {
        let got = status(&stack, &keys, who, &Method::DELETE, &format!("{base}/api/v1/keys/{owner_key_id}"), None).await;
        if got != want {
            wrong.push(format!("DELETE own key as {who:?}: {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The revoked key stops working within the lookup cache's TTL (2 s).
    let revoked = stack.client_with(Some(&owner_key)).unwrap();
    let mut last = StatusCode::OK;
    for _ in 0..40 {
        last = revoked.get(format!("{base}/api/v1/keys")).send().await.unwrap().status();
        if last == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(last, StatusCode::UNAUTHORIZED, "a revoked key kept working past 10 s");

    // A malformed key is 401 problem+json with a challenge, before any handler.
    let r = stack.client_with(Some("not-a-key")).unwrap().get(format!("{base}/api/v1/videos")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "api-key-malformed");
}

/// The ids on the first (newest) page of 100 a client is shown.
async fn listed(client: &reqwest::Client, base: &str) -> Vec<String> {
    let page: Value = client.get(format!("{base}/api/v1/videos?limit=100")).send().await.unwrap().json().await.unwrap();
    page["items"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn listings_show_creators_their_own_admins_everything_and_anonymous_callers_public_videos() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let base = stack.nginx_http.clone();
    let admin = stack.client_with(Some(&stack.admin_key().unwrap())).unwrap();
    let (a_key, _) = new_creator(&admin, &base, "list a").await;
    let (b_key, _) = new_creator(&admin, &base, "list b").await;
    let a = stack.client_with(Some(&a_key)).unwrap();
    let mut ids = Vec::new();
    for vis in ["public", "unlisted", "private"] {
        let r = a.post(format!("{base}/api/v1/videos?title=list-{vis}&visibility={vis}")).header("content-type", "video/mp4").body(vec![7u8; 64]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let seen_by = |list: &[String]| ids.iter().map(|id| list.contains(id)).collect::<Vec<_>>();
    assert_eq!(seen_by(&listed(&a, &base).await), [true, true, true], "the owner sees all three");
    assert_eq!(seen_by(&listed(&admin, &base).await), [true, true, true], "an admin sees all three");
    assert_eq!(seen_by(&listed(&stack.client_with(Some(&b_key)).unwrap(), &base).await), [false, false, false], "another creator lists only their own");
    assert_eq!(seen_by(&listed(&stack.anonymous_client().unwrap(), &base).await), [true, false, false], "anonymous: public only");
    for id in &ids {
        assert_eq!(a.delete(format!("{base}/api/v1/videos/{id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn an_upload_refused_for_lack_of_a_key_leaves_no_row_and_no_object() {
    let _panics = PanicWatch::start();
    let stack = Stack::from_env();
    let db = database().await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&db).await.unwrap() }
    };
    let (videos, uploads) = (count("SELECT count(*) FROM videos").await, count("SELECT count(*) FROM uploads").await);
    let anon = stack.anonymous_client().unwrap();
    let r = anon.post(format!("{}/api/v1/videos?title=x", stack.nginx_http)).header("content-type", "video/mp4").body(vec![1u8; 1 << 20]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = anon.post(format!("{}/api/v1/uploads", stack.nginx_http)).header("tus-resumable", "1.0.0").header("upload-length", "100").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Other tests may add rows meanwhile; none of them is anonymous.
    let anonymous_rows = count("SELECT count(*) FROM videos WHERE owner_id IS NULL AND created_at > now() - interval '1 minute'").await
        + count("SELECT count(*) FROM uploads WHERE owner_id IS NULL AND created_at > now() - interval '1 minute'").await;
    assert_eq!(anonymous_rows, 0, "a refused upload left a row (videos {videos}, uploads {uploads} before)");
}
