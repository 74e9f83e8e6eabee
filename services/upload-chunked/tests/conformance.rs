//! tus 1.0.0 conformance, verb by verb: every status code and header the
//! protocol and its extensions define, and that no refusal changes a
//! stored upload.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn options_advertises_version_extensions_max_size_and_checksums_without_tus_resumable() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/uploads",
        "/api/v1/uploads/",
        "/api/v1/uploads/0192f000-0000-7000-8000-000000000000",
    ] {
        let res = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let h = res.headers();
        assert_eq!(header(h, "tus-version"), "1.0.0");
        assert_eq!(header(h, "tus-resumable"), "1.0.0");
        assert_eq!(header(h, "tus-max-size"), (64 * MIB).to_string());
        assert_eq!(header(h, "tus-checksum-algorithm"), "sha1,md5,sha256,crc32");
        let ext = header(h, "tus-extension");
        for e in [
            "creation",
            "creation-with-upload",
            "creation-defer-length",
            "expiration",
            "checksum",
            "checksum-trailer",
            "termination",
            "concatenation",
            "concatenation-unfinished",
        ] {
            assert!(ext.split(',').any(|x| x == e), "{e} missing from {ext}");
        }
    }
}

#[tokio::test]
async fn an_unsupported_or_missing_tus_version_gets_412_with_tus_version() {
    let app = spawn_app().await;
    for version in [Some("0.2.2"), Some("2.0.0"), None] {
        let mut req = app
            .client
            .post(app.url("/api/v1/uploads"))
            .header("upload-length", 10);
        if let Some(v) = version {
            req = req.header("tus-resumable", v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(header(res.headers(), "tus-version"), "1.0.0");
        assert_problem(res, 412, "tus-version-unsupported").await;
    }
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 0);
}

/// Request headers of one table row.
type Headers = Vec<(&'static str, String)>;

#[tokio::test]
async fn bad_creation_requests_get_problems_and_create_nothing() {
    let app = spawn_app().await;
    let unknown = "/api/v1/uploads/0192f000-0000-7000-8000-000000000000";
    let cases: Vec<(Headers, u16, &str)> = vec![
        (vec![], 400, "tus-length-required"),
        (
            vec![
                ("upload-length", "10".into()),
                ("upload-defer-length", "1".into()),
            ],
            400,
            "tus-length-conflict",
        ),
        (
            vec![("upload-length", "-5".into())],
            400,
            "tus-header-invalid",
        ),
        (
            vec![("upload-length", "ten".into())],
            400,
            "tus-header-invalid",
        ),
        (vec![("upload-length", "0".into())], 400, "tus-upload-empty"),
        (
            vec![("upload-length", (64 * MIB + 1).to_string())],
            413,
            "tus-upload-too-large",
        ),
        (
            vec![("upload-defer-length", "2".into())],
            400,
            "tus-header-invalid",
        ),
        (
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", "filename !!notbase64".into()),
            ],
            400,
            "tus-header-invalid",
        ),
        (
            vec![
                ("upload-length", "10".into()),
                (
                    "upload-metadata",
                    format!("filetype {}", b64(b"text/plain")),
                ),
            ],
            415,
            "tus-not-video",
        ),
        (
            vec![
                ("upload-length", "10".into()),
                ("upload-metadata", format!("checksum {}", b64(b"md5 AAAA"))),
            ],
            400,
            "tus-header-invalid",
        ),
        (
            vec![
                ("upload-concat", format!("final;{unknown}")),
                ("upload-length", "5".into()),
            ],
            400,
            "tus-concat-length",
        ),
        (
            vec![("upload-concat", format!("final;{unknown}"))],
            400,
            "tus-concat-invalid",
        ),
        (
            vec![("upload-concat", "final;/not/an/upload".into())],
            400,
            "tus-header-invalid",
        ),
        (
            vec![
                ("upload-concat", "sometimes".into()),
                ("upload-length", "5".into()),
            ],
            400,
            "tus-header-invalid",
        ),
        (
            vec![
                ("upload-length", "10".into()),
                ("content-type", "application/offset+octet-stream".into()),
                ("content-length", "11".into()),
            ],
            413,
            "tus-chunk-exceeds-length",
        ),
    ];
    for (headers, status, code) in cases {
        let mut req = app.tus(Method::POST, "/api/v1/uploads");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let body_len = headers
            .iter()
            .find(|(k, _)| *k == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap());
        if let Some(n) = body_len {
            req = req.body(vec![0u8; n]);
        }
        assert_problem(req.send().await.unwrap(), status, code).await;
    }
    assert_eq!(app.scalar("SELECT count(*) FROM uploads").await, 0);
    assert_eq!(app.open_multipart_uploads().await, 0);
}

#[tokio::test]
async fn creation_answers_201_with_location_and_upload_expires() {
    let app = spawn_app().await;
    let res = app
        .tus(Method::POST, "/api/v1/uploads/")
        .header("upload-length", 100)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let loc = location(&res);
    assert!(loc.starts_with("/api/v1/uploads/"), "{loc}");
    let expires = header(res.headers(), "upload-expires");
    assert!(
        httpdate::parse_http_date(&expires).unwrap() > std::time::SystemTime::now(),
        "{expires}"
    );
}

#[tokio::test]
async fn head_reports_offset_length_metadata_and_is_never_cached() {
    let app = spawn_app().await;
    let meta = format!("filename {},flag", b64(b"clip.mp4"));
    let path = app.create(1000, &meta).await;
    let res = app.patch(&path, 0, data(400, 1)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.head(&path).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(header(h, "upload-offset"), "400");
    assert_eq!(header(h, "upload-length"), "1000");
    assert_eq!(header(h, "upload-metadata"), meta);
    assert_eq!(header(h, "cache-control"), "no-store");
    assert_eq!(header(h, "tus-resumable"), "1.0.0");
    assert!(h.get("upload-expires").is_some());
    assert!(h.get("link").is_none(), "no video yet");

    let deferred = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    let res = app.head(&location(&deferred)).await;
    assert_eq!(header(res.headers(), "upload-defer-length"), "1");
    assert!(res.headers().get("upload-length").is_none());
}

#[tokio::test]
async fn bad_patches_get_problems_and_leave_the_offset_unchanged() {
    let app = spawn_app().await;
    let path = app.create(100, "").await;
    assert_eq!(
        app.patch(&path, 0, data(10, 2)).await.status(),
        StatusCode::NO_CONTENT
    );

    let wrong_type = app
        .tus(Method::PATCH, &path)
        .header("upload-offset", 10)
        .header("content-type", "application/octet-stream")
        .body(vec![1; 5])
        .send()
        .await
        .unwrap();
    assert_problem(wrong_type, 415, "tus-content-type").await;
    let no_offset = app
        .tus(Method::PATCH, &path)
        .header("content-type", "application/offset+octet-stream")
        .body(vec![1; 5])
        .send()
        .await
        .unwrap();
    assert_problem(no_offset, 400, "tus-header-missing").await;
    for bad in ["-1", "abc", "1e3"] {
        let res = app
            .tus(Method::PATCH, &path)
            .header("upload-offset", bad)
            .header("content-type", "application/offset+octet-stream")
            .body(vec![1; 5])
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "tus-header-invalid").await;
    }
    let mismatch = app.patch(&path, 5, vec![1; 5]).await;
    assert_eq!(mismatch.status(), StatusCode::CONFLICT);
    assert_problem(mismatch, 409, "tus-offset-mismatch").await;
    assert_problem(
        app.patch(&path, 10, vec![1; 91]).await,
        413,
        "tus-chunk-exceeds-length",
    )
    .await;
    let bad_len = app
        .tus(Method::PATCH, &path)
        .header("upload-offset", 10)
        .header("upload-length", 50)
        .header("content-type", "application/offset+octet-stream")
        .body(vec![1; 5])
        .send()
        .await
        .unwrap();
    assert_problem(bad_len, 400, "tus-length-already-set").await;
    assert_problem(
        app.patch(
            "/api/v1/uploads/0192f000-0000-7000-8000-000000000000",
            0,
            vec![1],
        )
        .await,
        404,
        "tus-upload-not-found",
    )
    .await;
    assert_problem(
        app.patch("/api/v1/uploads/not-a-uuid", 0, vec![1]).await,
        404,
        "tus-upload-not-found",
    )
    .await;
    assert_problem(
        app.tus(Method::GET, &path).send().await.unwrap(),
        405,
        "method-not-allowed",
    )
    .await;
    assert_eq!(app.offset(&path).await, 10);
}

#[tokio::test]
async fn checksums_verify_each_chunk_and_a_mismatch_is_460_with_the_chunk_discarded() {
    let app = spawn_app().await;
    let body = data(6 * MIB, 3);
    let path = app.create(body.len() + 10, "").await;
    let chunk = &body[..];
    let digests = [
        ("sha1", {
            use sha1::Digest;
            sha1::Sha1::digest(chunk).to_vec()
        }),
        ("md5", {
            use md5::Digest;
            md5::Md5::digest(chunk).to_vec()
        }),
        ("sha256", {
            use sha2::Digest;
            sha2::Sha256::digest(chunk).to_vec()
        }),
        ("crc32", crc32fast::hash(chunk).to_be_bytes().to_vec()),
    ];
    for (name, digest) in &digests {
        let mut wrong = digest.clone();
        wrong[0] ^= 1;
        let res = app
            .patch_with(
                &path,
                0,
                chunk.to_vec(),
                &[("upload-checksum", format!("{name} {}", b64(&wrong)))],
            )
            .await;
        assert_problem(res, 460, "tus-checksum-mismatch").await;
        assert_eq!(
            app.offset(&path).await,
            0,
            "{name}: a mismatched chunk must not move the offset"
        );
    }
    let res = app
        .patch_with(
            &path,
            0,
            chunk.to_vec(),
            &[("upload-checksum", "blake3 AAAA".into())],
        )
        .await;
    assert_problem(res, 400, "tus-checksum-unsupported").await;
    let (name, digest) = &digests[0];
    let res = app
        .patch_with(
            &path,
            0,
            chunk.to_vec(),
            &[("upload-checksum", format!("{name} {}", b64(digest)))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let tail = &data(10, 4);
    let res = app
        .patch_with(
            &path,
            chunk.len(),
            tail.to_vec(),
            &[(
                "upload-checksum",
                format!("crc32 {}", b64(&crc32fast::hash(tail).to_be_bytes())),
            )],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let mut all = body.clone();
    all.extend_from_slice(tail);
    let id = path.rsplit('/').next().unwrap();
    assert_eq!(
        app.object_sha256(&format!("sources/{id}")).await.unwrap(),
        sha256_hex(&all)
    );
}

#[tokio::test]
async fn a_checksum_sent_as_a_trailer_is_verified_after_the_body() {
    let app = spawn_app().await;
    let path = app.create(20, "").await;
    let chunk = data(12, 5);
    let send = |digest: Vec<u8>, offset: usize| {
        let framing = "Transfer-Encoding: chunked\r\nTrailer: Upload-Checksum\r\nConnection: close\r\n";
        let mut req = format!("{}{:x}\r\n", app.patch_head(&path, offset, framing), chunk.len()).into_bytes();
        req.extend_from_slice(&chunk);
        req.extend_from_slice(
            format!("\r\n0\r\nUpload-Checksum: sha1 {}\r\n\r\n", b64(&digest)).as_bytes(),
        );
        req
    };
    let good = {
        use sha1::Digest;
        sha1::Sha1::digest(&chunk).to_vec()
    };
    let mut bad = good.clone();
    bad[3] ^= 0xff;
    let head = app.raw(&send(bad, 0), false).await;
    assert!(head.starts_with("HTTP/1.1 460"), "{head}");
    assert_eq!(app.offset(&path).await, 0);
    let head = app.raw(&send(good, 0), false).await;
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    assert_eq!(app.offset(&path).await, 12);
}

#[tokio::test]
async fn x_http_method_override_turns_a_post_into_the_named_tus_request() {
    let app = spawn_app().await;
    let path = app.create(5, "").await;
    let res = app
        .tus(Method::POST, &path)
        .header("x-http-method-override", "PATCH")
        .header("upload-offset", 0)
        .header("content-type", "application/offset+octet-stream")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(res.headers(), "upload-offset"), "3");
    let res = app
        .tus(Method::POST, &path)
        .header("x-http-method-override", "HEAD")
        .send()
        .await
        .unwrap();
    assert_eq!(header(res.headers(), "upload-offset"), "3");
    let res = app
        .tus(Method::POST, &path)
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.head(&path).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cors_preflight_is_answered_and_every_tus_header_is_exposed() {
    let app = spawn_app().await;
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/uploads"))
        .header("origin", "https://creator.example")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "tus-resumable,upload-offset,upload-checksum,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let allow_headers = header(res.headers(), "access-control-allow-headers").to_ascii_lowercase();
    for h in [
        "tus-resumable",
        "upload-offset",
        "upload-checksum",
        "upload-metadata",
        "upload-concat",
        "x-http-method-override",
    ] {
        assert!(
            allow_headers.contains(h),
            "{h} not allowed: {allow_headers}"
        );
    }
    assert!(header(res.headers(), "access-control-allow-methods").contains("PATCH"));

    let res = app
        .tus(Method::POST, "/api/v1/uploads")
        .header("origin", "https://creator.example")
        .header("upload-length", 5)
        .send()
        .await
        .unwrap();
    assert_eq!(header(res.headers(), "access-control-allow-origin"), "*");
    let exposed = header(res.headers(), "access-control-expose-headers").to_ascii_lowercase();
    for h in [
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-expires",
        "upload-concat",
        "tus-resumable",
        "tus-version",
        "tus-extension",
        "tus-max-size",
        "tus-checksum-algorithm",
        "location",
        "link",
    ] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
}

#[tokio::test]
async fn termination_frees_the_bytes_and_later_requests_get_404() {
    let app = spawn_app().await;
    let path = app.create(12 * MIB, "").await;
    app.patch(&path, 0, data(7 * MIB, 6)).await;
    assert_eq!(app.open_multipart_uploads().await, 1);
    let id = path.rsplit('/').next().unwrap().to_owned();
    assert!(app.object_exists(&format!("tus/tails/{id}")).await);
    let res = app.tus(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.head(&path).await.status(), StatusCode::NOT_FOUND);
    assert_problem(
        app.patch(&path, 7 * MIB, vec![1]).await,
        404,
        "tus-upload-not-found",
    )
    .await;
    assert_problem(
        app.tus(Method::DELETE, &path).send().await.unwrap(),
        404,
        "tus-upload-not-found",
    )
    .await;
    assert_eq!(app.open_multipart_uploads().await, 0);
    assert!(!app.object_exists(&format!("tus/tails/{id}")).await);
}
