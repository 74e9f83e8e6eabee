//! The deployment files agree with the binaries: docker-compose.yml (parsed
//! by a real compose implementation) and the native stack give every
//! service exactly the variables it reads, and all the variables it requires.
//! Compose is a deployment: it runs in production with secrets of its own
//! (scripts/compose-env), never the example values of .env.example.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SERVICES: [(&str, &str); 9] = [
    ("upload-http2", "upload-http2"),
    ("upload-chunked", "upload-chunked"),
    ("streaming", "streaming"),
    ("live-ingest", "live-ingest"),
    ("cdn-edge-1", "cdn-edge"),
    ("cdn-edge-2", "cdn-edge"),
    ("cdn-edge-secondary", "cdn-edge"),
    ("transcode-worker", "transcode-worker"),
    ("transcode-worker-pull", "transcode-worker"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// (every name, required names) from `<binary> --list-env`.
fn binary_vars(binary: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("target"));
    let text = run(Command::new(target.join("debug").join(binary)).arg("--list-env"));
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let all = rows.iter().map(|r| r[0].to_owned()).collect();
    let required = rows.iter().filter(|r| r[1] == "required").map(|r| r[0].to_owned()).collect();
    (all, required)
}

fn stack_vars(service: &str) -> BTreeSet<String> {
    run(Command::new(repo().join("scripts/stack")).args(["env", service]))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .collect()
}

/// `NAME=VALUE` lines of an env file (comments skipped).
fn env_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// A deployment's secrets as `scripts/compose-env --out` writes them.
struct Secrets {
    dir: tempfile::TempDir,
    file: PathBuf,
    values: BTreeMap<String, String>,
}

fn generated_secrets() -> Secrets {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".env");
    run(Command::new(repo().join("scripts/compose-env")).arg("--out").arg(&file));
    let values = env_lines(&std::fs::read_to_string(&file).unwrap());
    assert!(!values.is_empty(), "scripts/compose-env wrote no secrets");
    Secrets { dir, file, values }
}

/// `docker-compose config` with `env_file` as the only source of variables:
/// none come from this process, whose environment may hold the native
/// stack's (example) values, nor from a .env beside docker-compose.yml.
fn compose_config(env_file: &Path) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    cmd.arg("--env-file").arg(env_file).arg("-f").arg(repo().join("docker-compose.yml")).arg("config");
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// The rendered compose file of a freshly generated deployment.
fn rendered() -> (Secrets, serde_yaml::Value) {
    let secrets = generated_secrets();
    let out = compose_config(&secrets.file);
    assert!(out.status.success(), "docker-compose config failed: {}", String::from_utf8_lossy(&out.stderr));
    (secrets, serde_yaml::from_slice(&out.stdout).unwrap())
}

fn env_of(compose: &serde_yaml::Value, service: &str) -> BTreeMap<String, String> {
    let env = compose["services"][service]["environment"].as_mapping().unwrap_or_else(|| panic!("{service} has no environment"));
    env.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().map_or_else(|| format!("{v:?}"), str::to_owned))).collect()
}

/// Every string in the rendered file: environments, commands, health checks.
fn strings(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::String(s) => out.push(s.clone()),
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        serde_yaml::Value::Mapping(m) => m.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out)
        }),
        _ => {}
    }
}

fn url_password(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok()?.password().map(str::to_owned)
}

/// The secrets .env.example publishes, which the services refuse outside
/// dev: whole values, the passwords inside URLs and the keys inside
/// `kid:key` lists.
fn example_secrets() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo().join(".env.example")).unwrap();
    let mut found = BTreeSet::new();
    for line in doc.lines() {
        let Some((name, value)) = line.trim_start_matches(['#', ' ']).split_once('=') else { continue };
        let value = value.trim();
        if value.is_empty() || shared::secrets::refused(name, value).is_none() {
            continue;
        }
        found.insert(value.to_owned());
        if value.contains("://") {
            found.extend(url_password(value));
        } else {
            found.extend(value.split(',').filter_map(|e| e.split_once(':')).map(|(_, key)| key.to_owned()));
        }
    }
    found
}

#[test]
fn compose_and_the_native_stack_give_each_service_exactly_what_it_reads() {
    let _panics = e2e::PanicWatch::start();
    let (_secrets, compose) = rendered();
    for (service, binary) in SERVICES {
        let env = &compose["services"][service]["environment"];
        let in_compose: BTreeSet<String> = env.as_mapping().unwrap_or_else(|| panic!("{service} has no environment")).keys().map(|k| k.as_str().unwrap().to_owned()).collect();
        let (reads, required) = binary_vars(binary);
        let native = stack_vars(service);
        let unknown: Vec<_> = in_compose.difference(&reads).collect();
        assert!(unknown.is_empty(), "{service}: compose sets variables {binary} never reads: {unknown:?}");
        let missing: Vec<_> = required.difference(&in_compose).collect();
        assert!(missing.is_empty(), "{service}: compose lacks required {missing:?}");
        assert_eq!(in_compose, native, "{service}: compose and scripts/stack set different variables");
    }
}

#[test]
fn compose_builds_each_service_from_the_dockerfile_and_gates_on_health() {
    let _panics = e2e::PanicWatch::start();
    let (_secrets, compose) = rendered();
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    for (service, binary) in SERVICES {
        let s = &compose["services"][service];
        assert!(s["healthcheck"]["test"].is_sequence() || s["healthcheck"]["test"].is_string(), "{service} has no healthcheck");
        if let Some(target) = s["build"]["target"].as_str() {
            assert_eq!(target, binary);
            assert!(dockerfile.contains(&format!("AS {target}")), "Dockerfile has no stage {target}");
        }
    }
    for infra in ["postgres", "redis", "rabbitmq", "minio", "nginx", "haproxy"] {
        assert!(compose["services"][infra].is_mapping(), "compose lacks {infra}");
    }
}

#[test]
fn every_variable_a_binary_reads_is_documented_in_env_example() {
    let _panics = e2e::PanicWatch::start();
    let doc = std::fs::read_to_string(repo().join(".env.example")).unwrap();
    for (_, binary) in SERVICES {
        for name in binary_vars(binary).0 {
            assert!(doc.contains(&format!("{name}=")), ".env.example does not document {name} (read by {binary})");
        }
    }
}

#[test]
fn compose_refuses_to_render_without_each_secret() {
    let _panics = e2e::PanicWatch::start();
    let secrets = generated_secrets();
    let empty = secrets.dir.path().join("empty.env");
    std::fs::write(&empty, "").unwrap();
    let out = compose_config(&empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "docker-compose config succeeded with no secrets");
    assert!(stderr.contains("run scripts/compose-env"), "the error does not say what to do: {stderr}");
    // No secret has a fallback: without any one of them, Compose names it.
    for missing in secrets.values.keys() {
        let file = secrets.dir.path().join("partial.env");
        let rest: String = secrets.values.iter().filter(|(k, _)| *k != missing).map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&file, rest).unwrap();
        let out = compose_config(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "docker-compose config succeeded without {missing}");
        assert!(stderr.contains(&format!("{missing} is not set")), "the error does not name {missing}: {stderr}");
    }
}

#[test]
fn compose_runs_in_production_with_secrets_of_its_own() {
    let _panics = e2e::PanicWatch::start();
    let (secrets, compose) = rendered();
    let mut all = Vec::new();
    strings(&compose, &mut all);
    for secret in example_secrets() {
        assert!(!all.iter().any(|s| s.contains(&secret)), "the rendered compose file holds {secret:?}, an example secret from .env.example");
    }
    for (name, value) in &secrets.values {
        assert!(all.iter().any(|s| s.contains(value.as_str())), "{name} from the generated env file is used nowhere");
    }
    for (service, _) in SERVICES {
        let env = env_of(&compose, service);
        assert_eq!(env.get("PLATFORM_ENV").map(String::as_str), Some("production"), "{service} does not run in production");
        for (name, value) in &env {
            assert_eq!(shared::secrets::refused(name, value), None, "{service} would refuse to start");
        }
        assert!(!env.keys().any(|k| k.starts_with("MINIO_ROOT_")), "{service} sees MinIO's root credentials");
    }

    // The backing services take the passwords the platform's URLs carry.
    let postgres = env_of(&compose, "postgres");
    let rabbitmq = env_of(&compose, "rabbitmq");
    let redis = env_of(&compose, "redis");
    let minio = env_of(&compose, "minio");
    let minio_init = env_of(&compose, "minio-init");
    let platform = env_of(&compose, "upload-http2");
    assert_eq!(url_password(&platform["DATABASE_URL"]).as_ref(), Some(&postgres["POSTGRES_PASSWORD"]));
    assert_eq!(url_password(&platform["AMQP_URL"]).as_ref(), Some(&rabbitmq["RABBITMQ_DEFAULT_PASS"]));
    assert_eq!(reqwest::Url::parse(&platform["AMQP_URL"]).unwrap().username(), rabbitmq["RABBITMQ_DEFAULT_USER"]);
    assert_ne!(rabbitmq["RABBITMQ_DEFAULT_USER"], "guest");
    assert_eq!(url_password(&platform["REDIS_URL"]).as_ref(), Some(&redis["REDIS_PASSWORD"]));
    let redis_command: Vec<&str> = compose["services"]["redis"]["command"].as_sequence().expect("redis has no command").iter().filter_map(|v| v.as_str()).collect();
    assert!(redis_command.windows(2).any(|w| w == ["--requirepass", redis["REDIS_PASSWORD"].as_str()]), "redis runs without --requirepass: {redis_command:?}");
    // The platform's S3 account is minio-init's service account, not root.
    assert_eq!(minio_init["MINIO_ROOT_USER"], minio["MINIO_ROOT_USER"]);
    assert_eq!(minio_init["S3_ACCESS_KEY_ID"], platform["S3_ACCESS_KEY_ID"]);
    assert_eq!(minio_init["S3_SECRET_ACCESS_KEY"], platform["S3_SECRET_ACCESS_KEY"]);
    assert_ne!(platform["S3_ACCESS_KEY_ID"], minio["MINIO_ROOT_USER"]);

    // The generated keys are what the services parse, and belong together.
    assert!(shared::auth::ApiKey::parse(&platform["ADMIN_API_KEY"]).is_some(), "ADMIN_API_KEY is not an API key");
    let streaming = env_of(&compose, "streaming");
    let signer: shared::playback::Signer = streaming["PLAYBACK_SIGNING_KEYS"].parse().unwrap();
    let masters = &streaming["CONTENT_MASTER_KEYS"];
    masters.parse::<shared::playback::MasterKeys>().unwrap();
    for (service, binary) in SERVICES {
        let env = env_of(&compose, service);
        if binary == "cdn-edge" {
            assert_eq!(env["PLAYBACK_PUBLIC_KEYS"], signer.public_keys(), "{service}: not the public half of streaming's signing keys");
            assert!(env["PURGE_TOKEN"].len() >= 16);
        }
        if binary == "transcode-worker" {
            assert_eq!(&env["CONTENT_MASTER_KEYS"], masters, "{service} wraps content keys under another master key");
        }
    }
}
