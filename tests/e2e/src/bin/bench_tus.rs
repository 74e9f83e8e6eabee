//! The tus benchmark (not a test): run by `scripts/bench-tus` against the
//! native stack. One run, the same bytes, the same client code for both
//! servers, the same Garage:
//!
//! - a direct S3 PutObject of the file (the ceiling);
//! - upload-chunked (:8002) with 8 MiB and with 64 MiB PATCHes;
//! - @tus/server + @tus/s3-store (the official Node server, 8 MiB parts like
//!   ours) with the same two chunk sizes.
//!
//! Each figure is the median of three rounds; rounds interleave the
//! contenders so machine noise hits them alike. Our uploads are sent as
//! `Upload-Concat: partial` so the random bytes do not become a video and
//! start a transcode mid-benchmark; the byte path (parts, tail, commits,
//! CompleteMultipartUpload) is the same as for any upload.
//!
//! `BENCH_TUS_BUDGETS=compare` measures instead what the upload budgets and
//! the body pace cost (issue 11's goal: on ≥ 0.97 × off): two upload-chunked
//! processes of this build, one with the default budgets and pace, one with
//! all of them off (`UPLOAD_MAX_CONCURRENT=0` …), in a world of their own
//! (database, bucket), each taking `BENCH_TUS_PARALLEL` (4) concurrent
//! uploads per round so the semaphores are contended; five interleaved rounds.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::Url;
use shared::configuration::Env;
use shared::testing::World;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};

const MIB: u64 = 1 << 20;
const ROUNDS: usize = 3;
const NODE_PORT: u16 = 18090;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bytes = std::env::var("BENCH_TUS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512u64)
        * MIB;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("upload.bin");
    e2e::write_random(&file, bytes).await?;
    if std::env::var("BENCH_TUS_BUDGETS").as_deref() == Ok("compare") {
        return compare_budgets(&file, bytes).await;
    }
    let storage = shared::storage::S3Settings::from_env(&mut Env::from_process()).store();
    let http = reqwest::Client::new();
    let mut node = start_node_server(8 * MIB).await?;
    let ours = "http://127.0.0.1:8002/api/v1/uploads";
    let theirs = format!("http://127.0.0.1:{NODE_PORT}/files");

    println!(
        "== tus: {} MiB of random bytes, median of {ROUNDS} rounds",
        bytes / MIB
    );
    let mut direct = vec![];
    let mut results: Vec<(String, Vec<f64>)> = vec![];
    let contenders = [
        ("upload-chunked", ours, 8),
        ("upload-chunked", ours, 64),
        ("@tus/server+s3-store", theirs.as_str(), 8),
        ("@tus/server+s3-store", theirs.as_str(), 64),
    ];
    for _ in 0..ROUNDS {
        let started = Instant::now();
        storage
            .put_file("bench/tus-direct-put", &file, "application/octet-stream")
            .await?;
        direct.push(rate(bytes, started));
        storage.delete("bench/tus-direct-put").await?;
        for (i, (name, endpoint, chunk_mib)) in contenders.iter().enumerate() {
            let r = tus_upload(
                &http,
                endpoint,
                &file,
                bytes,
                chunk_mib * MIB,
                *endpoint == ours,
            )
            .await?;
            if results.len() <= i {
                results.push((format!("{name}, {chunk_mib} MiB PATCHes"), vec![]));
            }
            results[i].1.push(r);
        }
    }
    node.kill().await.ok();
    let direct = median(&mut direct);
    println!(
        "{:<44} {direct:8.1} MiB/s   (baseline)",
        "direct S3 PutObject"
    );
    let medians: Vec<f64> = results.iter_mut().map(|(_, v)| median(v)).collect();
    for (i, (label, _)) in results.iter().enumerate() {
        let m = medians[i];
        let vs_node = if i < 2 {
            format!("   vs @tus/server same chunks: {:.2}", m / medians[i + 2])
        } else {
            String::new()
        };
        println!(
            "{label:<44} {m:8.1} MiB/s   ratio vs direct PUT: {:.2}{vs_node}",
            m / direct
        );
    }
    Ok(())
}

fn rate(bytes: u64, started: Instant) -> f64 {
    bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every budget and pace rule off: what `compare_budgets` measures against.
const BUDGETS_OFF: [(&str, &str); 4] = [
    ("UPLOAD_MAX_CONCURRENT", "0"),
    ("UPLOAD_MAX_BYTES_IN_FLIGHT", "0"),
    ("UPLOAD_MIN_BYTES_PER_SEC", "0"),
    ("UPLOAD_REQUEST_DEADLINE", "0"),
];
const COMPARE_ROUNDS: usize = 5;

async fn compare_budgets(file: &Path, bytes: u64) -> anyhow::Result<()> {
    let parallel: u64 = std::env::var("BENCH_TUS_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let world = World::new().await;
    let start = |off: bool| -> anyhow::Result<(e2e::Process, String)> {
        let port = e2e::free_port();
        let mut overrides: Vec<(&str, String)> = world.env();
        overrides.push(("HTTP_ADDR", format!("127.0.0.1:{port}")));
        if off {
            overrides.extend(BUDGETS_OFF.iter().map(|(k, v)| (*k, v.to_string())));
        }
        Ok((e2e::spawn_stack_service("upload-chunked", "upload-chunked", &overrides), format!("http://127.0.0.1:{port}")))
    };
    let (_on_process, on) = start(false)?;
    let (_off_process, off) = start(true)?;
    for base in [&on, &off] {
        e2e::wait_ready(&format!("{base}/health/ready"), Duration::from_secs(60)).await?;
    }
    let http = reqwest::Client::new();
    let share = bytes / parallel;
    println!(
        "== tus budgets on vs off: {parallel} concurrent uploads of {} MiB each per round, 8 MiB PATCHes, median of {COMPARE_ROUNDS} rounds",
        share / MIB
    );
    let (mut on_rates, mut off_rates) = (vec![], vec![]);
    for round in 0..COMPARE_ROUNDS {
        // Alternate who goes first, so a warming cache or a neighbour's build favours neither.
        let order = if round % 2 == 0 { [(&on, true), (&off, false)] } else { [(&off, false), (&on, true)] };
        for (base, is_on) in order {
            let endpoint = format!("{base}/api/v1/uploads");
            let started = Instant::now();
            let uploads = (0..parallel).map(|i| tus_upload_part_of(&http, &endpoint, file, i * share, share, 8 * MIB));
            futures::future::try_join_all(uploads).await?;
            let r = rate(share * parallel, started);
            if is_on { on_rates.push(r) } else { off_rates.push(r) }
        }
    }
    let scraped = e2e::scrape(&on, "upload_budget_refusals_total").await?;
    let (on_median, off_median) = (median(&mut on_rates), median(&mut off_rates));
    println!("{:<44} {on_median:8.1} MiB/s", "budgets and pace on (defaults)");
    println!("{:<44} {off_median:8.1} MiB/s", "budgets and pace off");
    println!("ratio on / off: {:.3}   (refusals while on: {scraped})", on_median / off_median);
    Ok(())
}

/// `tus_upload` of `size` bytes read from `file` at `skip`.
async fn tus_upload_part_of(
    http: &reqwest::Client,
    endpoint: &str,
    file: &Path,
    skip: u64,
    size: u64,
    chunk: u64,
) -> anyhow::Result<f64> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(std::io::SeekFrom::Start(skip)).await?;
    tus_upload_from(http, endpoint, f, size, chunk, true).await
}

/// One upload with a plain tus client: POST, then PATCHes of `chunk` bytes
/// read from the file; DELETE afterwards so the bucket does not fill.
async fn tus_upload(
    http: &reqwest::Client,
    endpoint: &str,
    file: &Path,
    size: u64,
    chunk: u64,
    partial: bool,
) -> anyhow::Result<f64> {
    tus_upload_from(http, endpoint, tokio::fs::File::open(file).await?, size, chunk, partial).await
}

async fn tus_upload_from(
    http: &reqwest::Client,
    endpoint: &str,
    mut f: tokio::fs::File,
    size: u64,
    chunk: u64,
    partial: bool,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut req = http
        .post(endpoint)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", size);
    if partial {
        req = req.header("upload-concat", "partial");
    }
    let res = req.send().await?;
    if res.status() != 201 {
        bail!("{endpoint}: creation answered {}", res.status());
    }
    let location = res
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?;
    let url = Url::parse(endpoint)?.join(location)?;
    let mut offset = 0u64;
    while offset < size {
        let n = chunk.min(size - offset) as usize;
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf).await?;
        let res = http
            .patch(url.clone())
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
            .body(buf)
            .send()
            .await?;
        if res.status() != 204 {
            bail!(
                "{url}: PATCH at {offset} answered {}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
        offset += n as u64;
    }
    let r = rate(size, started);
    http.delete(url)
        .header("tus-resumable", "1.0.0")
        .send()
        .await?;
    Ok(r)
}

async fn start_node_server(part_size: u64) -> anyhow::Result<tokio::process::Child> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/tus_node_server.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(NODE_PORT.to_string())
        .arg(part_size.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting @tus/server (run scripts/setup for the npm packages)")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await??
        .context("@tus/server exited")?;
    if !line.contains("listening") {
        bail!("@tus/server said {line}");
    }
    Ok(child)
}
