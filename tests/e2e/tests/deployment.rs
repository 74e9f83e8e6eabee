//! The deployment files agree with the binaries: docker-compose.yml (parsed
//! by a real compose implementation) and the native stack give every
//! service exactly the variables it reads, and all the variables it requires.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const SERVICES: [(&str, &str); 8] = [
    ("upload-http2", "upload-http2"),
    ("upload-chunked", "upload-chunked"),
    ("streaming", "streaming"),
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

#[test]
fn compose_and_the_native_stack_give_each_service_exactly_what_it_reads() {
    let _panics = e2e::PanicWatch::start();
    let rendered = run(Command::new("docker-compose").arg("-f").arg(repo().join("docker-compose.yml")).arg("config"));
    let compose: serde_yaml::Value = serde_yaml::from_str(&rendered).unwrap();
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
    let rendered = run(Command::new("docker-compose").arg("-f").arg(repo().join("docker-compose.yml")).arg("config"));
    let compose: serde_yaml::Value = serde_yaml::from_str(&rendered).unwrap();
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
