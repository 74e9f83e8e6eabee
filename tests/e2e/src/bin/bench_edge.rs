//! The delivery benchmark (not a test): run by `scripts/bench-edge`. One
//! run, one isolated world (database, bucket, Redis prefix) on the
//! machine's PostgreSQL, Redis and Garage; a real origin process, a real
//! cdn-edge process, and NGINX with proxy_cache in front of the same origin;
//! the same Rust load generator (keep-alive HTTP/1.1, fixed concurrency)
//! against each:
//!
//! 1. cache-hit requests/s and p99 latency, cdn-edge vs NGINX proxy_cache,
//!    for a 4 KB playlist and a 1 MB segment (both caches warmed first);
//! 2. time to first byte of a 1 MB segment: edge (hit) vs the origin direct;
//! 3. origin fetches per 1000 viewer requests while simulated viewers play
//!    a 10-segment ladder through the edge (masters are per viewer and pass
//!    through; everything else is fetched once);
//! 4. the cost of the per-client rate limit on cache hits: two edges, one
//!    with RATE_LIMIT_HLS off, one with a rate no client reaches (so every
//!    request is checked and none refused), loaded in turn, three times each, as
//!    one forwarded client; with the load generator's and the edge's CPU;
//! 5. the cost of signed playback on cache hits (issue 12): at one edge, the
//!    same cached 1 MB segment (and 1.5 KB init segment) of a private video
//!    requested with a signed URL (`?token=…`, checked on every hit) and of
//!    a public video without one, in alternating runs (ABBA), four each;
//!    the ratio signed/unsigned of the mean req/s (goal: ≥ 0.95), with the
//!    load generator's and the edge's CPU.
//!
//! `bench_edge --limiter` runs the setup and part 4 only; `bench_edge
//! --signed` the setup and part 5 only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use shared::testing::World;

const CONCURRENCY: usize = 32;
const RUN: Duration = Duration::from_secs(6);
const TTFB_SAMPLES: usize = 300;
const VIEWERS: usize = 100;
const SEGMENTS: usize = 10;
/// The client the limiter comparison sends as (through a trusted proxy).
const FORWARDED_CLIENT: &str = "198.51.100.77";
const LIMITER_ROUNDS: usize = 3;
const SIGNED_ROUNDS: usize = 4;
/// The bench's own playback signing key and content master key (an
/// isolated dev world: PLATFORM_ENV=dev).
const SIGNING_KEYS: &str = "bench:YmVuY2gtc2lnbmluZy1rZXktMDEyMzQ1Njc4OWFiY2Q";
const MASTER_KEYS: &str = "bench:YmVuY2gtbWFzdGVyLWtleS0wMTIzNDU2Nzg5YWJjZGU";

fn spawn(bin: &str, env: &[(&str, String)], log: &Path) -> anyhow::Result<e2e::Process> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(e2e::binary(bin)).env_clear().envs(env.iter().map(|(k, v)| (*k, v))).stdout(log.try_clone()?).stderr(log).spawn().with_context(|| bin.to_owned())?;
    Ok(e2e::Process(child))
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    e2e::wait_ready(url, Duration::from_secs(30)).await
}

fn noise(len: usize) -> Bytes {
    shared::testing::noise(len, 7).into()
}

fn playlist() -> String {
    let mut p = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init_0.mp4\"\n");
    let mut i = 0;
    // About 4 KB: a ten-minute rendition's playlist.
    while p.len() < 4000 {
        p.push_str(&format!("#EXTINF:6.000000,\nseg_{i:05}.m4s\n"));
        i += 1;
    }
    p.push_str("#EXT-X-ENDLIST\n");
    p
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// CONCURRENCY keep-alive clients hammer one URL for RUN; every body is read whole.
async fn load(url: &str, expect_len: usize) -> anyhow::Result<Load> {
    load_as(url, expect_len, None).await
}

/// [`load`], every request carrying `X-Forwarded-For: forwarded` if given.
async fn load_as(url: &str, expect_len: usize, forwarded: Option<&str>) -> anyhow::Result<Load> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(f) = forwarded {
        headers.insert("x-forwarded-for", f.parse()?);
    }
    let client = reqwest::Client::builder().http1_only().pool_max_idle_per_host(CONCURRENCY).default_headers(headers).build()?;
    for _ in 0..50 {
        let b = client.get(url).send().await?.error_for_status()?.bytes().await?;
        if b.len() != expect_len {
            bail!("{url}: {} bytes, expected {expect_len}", b.len());
        }
    }
    let until = Instant::now() + RUN;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(50_000);
                while Instant::now() < until {
                    let t = Instant::now();
                    let r = client.get(&url).send().await?.error_for_status()?;
                    let n = r.bytes().await?.len();
                    lat.push(t.elapsed());
                    if n != expect_len {
                        bail!("short body: {n}");
                    }
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let ms = sorted_ms(all);
    Ok(Load { rps: ms.len() as f64 / secs, p50_ms: e2e::percentile(&ms, 0.50), p99_ms: e2e::percentile(&ms, 0.99) })
}

/// Sequential requests; time until the response head arrives.
async fn ttfb(url: &str) -> anyhow::Result<(f64, f64)> {
    let client = reqwest::Client::builder().http1_only().build()?;
    let mut samples = Vec::with_capacity(TTFB_SAMPLES);
    for i in 0..TTFB_SAMPLES + 20 {
        let t = Instant::now();
        let r = client.get(url).send().await?.error_for_status()?;
        let head = t.elapsed();
        r.bytes().await?;
        if i >= 20 {
            samples.push(head);
        }
    }
    let ms = sorted_ms(samples);
    Ok((e2e::percentile(&ms, 0.5), e2e::percentile(&ms, 0.99)))
}

/// CPU seconds (user + system) used so far by a process (`self` or a pid),
/// from /proc: fields 14 and 15 of its stat, in clock ticks.
fn cpu_secs(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name: Vec<&str> = stat.rsplit_once(')').context("unreadable /proc stat")?.1.split_whitespace().collect();
    let ticks: f64 = after_name[11].parse::<f64>()? + after_name[12].parse::<f64>()?;
    let per_sec: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?.trim().parse()?;
    Ok(ticks / per_sec)
}

/// Part 4: cache-hit requests/s with the per-client limit off and on, the
/// edges started here from `edge_env` (no disk tier), in alternating runs.
async fn limiter_cost(edge_env: &[(&'static str, String)], scratch: &Path, path: &str, len: usize) -> anyhow::Result<()> {
    let mut edges = Vec::new();
    for (label, rate) in [("off", "off"), ("on", "1000000/s burst=1000000")] {
        let port = e2e::free_port();
        let mut env: Vec<(&str, String)> = edge_env.iter().filter(|(k, _)| !matches!(*k, "EDGE_DISK_DIR" | "HTTP_ADDR")).cloned().collect();
        env.push(("HTTP_ADDR", format!("127.0.0.1:{port}")));
        env.push(("RATE_LIMIT_HLS", rate.into()));
        let process = spawn("cdn-edge", &env, &scratch.join(format!("edge-limit-{label}.log")))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{url}/health/ready")).await?;
        edges.push((label, url, process));
    }
    println!(
        "== rate limiter on cache hits: 4 KB playlist, {CONCURRENCY} keep-alive connections, {}s per run, {LIMITER_ROUNDS} runs each, alternating; every request from one forwarded client ({FORWARDED_CLIENT}); \"on\" = RATE_LIMIT_HLS=1000000/s (checked, never refused), \"off\" = RATE_LIMIT_HLS=off",
        RUN.as_secs()
    );
    let mut rps = [0.0f64; 2];
    for round in 1..=LIMITER_ROUNDS {
        for (i, (label, url, process)) in edges.iter().enumerate() {
            let pid = process.0.id().to_string();
            let (gen0, edge0, t0) = (cpu_secs("self")?, cpu_secs(&pid)?, Instant::now());
            let run = load_as(&format!("{url}{path}"), len, Some(FORWARDED_CLIENT)).await?;
            let wall = t0.elapsed().as_secs_f64();
            let (gen, edge) = ((cpu_secs("self")? - gen0) / wall, (cpu_secs(&pid)? - edge0) / wall);
            rps[i] += run.rps / LIMITER_ROUNDS as f64;
            println!(
                "limiter {label:<3} run {round}: {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms   CPU: load generator {:>4.0}% of a core, edge {:>4.0}% ({} cores)",
                run.rps,
                run.p50_ms,
                run.p99_ms,
                gen * 100.0,
                edge * 100.0,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
        }
    }
    let refusals = e2e::scrape(&edges[1].1, "rate_limit_refusals_total").await?;
    println!("limiter on/off, mean req/s: {:.0} / {:.0} = ratio {:.3} (cost {:.1} %); requests refused while on: {refusals}", rps[1], rps[0], rps[1] / rps[0], (1.0 - rps[1] / rps[0]) * 100.0);
    Ok(())
}

/// Part 5: cache-hit requests/s for the same bytes, signed (a private
/// video, `?token=…`) and unsigned (a public one), at the edge at `edge`
/// (process `pid`), in alternating runs.
async fn signed_cost(edge: &str, pid: u32, private: uuid::Uuid, public: uuid::Uuid, token: &str, objects: &[(&str, &str, usize)]) -> anyhow::Result<()> {
    println!(
        "== signed playback on cache hits: one edge, {CONCURRENCY} keep-alive connections, {}s per run, {SIGNED_ROUNDS} runs each, alternating (ABBA…); \"signed\" = a private video's object with ?token= (verified on every hit), \"unsigned\" = the same bytes of a public video",
        RUN.as_secs()
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fetches_before = e2e::scrape(edge, "edge_origin_fetches_total").await?;
    for (label, object, len) in objects {
        let urls = [("unsigned", format!("{edge}/hls/{public}/{object}")), ("signed", format!("{edge}/hls/{private}/{object}?token={token}"))];
        let mut rps = [0.0f64; 2];
        for round in 1..=SIGNED_ROUNDS {
            // ABBA: neither kind always runs first (warm-up, drift).
            let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
            for i in order {
                let (kind, url) = &urls[i];
                let (gen0, edge0, t0) = (cpu_secs("self")?, cpu_secs(&pid.to_string())?, Instant::now());
                let run = load(url, *len).await?;
                let wall = t0.elapsed().as_secs_f64();
                let (gen, edge_cpu) = ((cpu_secs("self")? - gen0) / wall, (cpu_secs(&pid.to_string())? - edge0) / wall);
                rps[i] += run.rps / SIGNED_ROUNDS as f64;
                println!(
                    "{label:<14} {kind:<8} run {round}: {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms   CPU: load generator {:>4.0}% of a core, edge {:>4.0}% ({cores} cores)",
                    run.rps,
                    run.p50_ms,
                    run.p99_ms,
                    gen * 100.0,
                    edge_cpu * 100.0
                );
            }
        }
        println!("{label:<14} signed/unsigned, mean req/s: {:.0} / {:.0} = ratio {:.3} (goal >= 0.95)", rps[1], rps[0], rps[1] / rps[0]);
    }
    let refusals = e2e::scrape(edge, "edge_playback_token_refusals_total").await?;
    let fetches = e2e::scrape(edge, "edge_origin_fetches_total").await? - fetches_before;
    println!("token refusals during the runs: {refusals}; origin fetches: {fetches} (at most one per video and object: everything else was a hit)");
    Ok(())
}

fn sorted_ms(mut samples: Vec<Duration>) -> Vec<f64> {
    samples.sort();
    samples.into_iter().map(|d| d.as_secs_f64() * 1000.0).collect()
}

fn nginx_conf(dir: &Path, port: u16, origin: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\ndaemon off;\nevents {{ worker_connections 4096; }}\nhttp {{\n\
    access_log off;\n    client_body_temp_path {d}/tmp-body;\n    proxy_temp_path {d}/tmp-proxy;\n    fastcgi_temp_path {d}/tmp-fcgi;\n    uwsgi_temp_path {d}/tmp-uwsgi;\n    scgi_temp_path {d}/tmp-scgi;\n\
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:64m max_size=4g inactive=1h use_temp_path=off;\n\
    upstream origin {{ server {origin}; keepalive 32; }}\n\
    server {{\n        listen 127.0.0.1:{port};\n        location /hls/ {{\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_pass http://origin;\n            proxy_cache bench;\n            proxy_cache_lock on;\n            proxy_cache_valid 200 1h;\n            add_header X-Cache $upstream_cache_status;\n        }}\n    }}\n}}\n"
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let world = World::new().await;
    let storage = world.backends.s3.store();
    storage.ensure_bucket().await?;
    let pool = world.backends.database.pool()?;
    let videos = shared::videos::Videos::new(pool.clone());
    let segment = noise(1 << 20);
    let media = playlist();
    let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=1500000,CODECS=\"avc1.64001f\",RESOLUTION=640x360\n360p/index.m3u8\n";
    let mut files: Vec<(String, Bytes)> = vec![("master.m3u8".into(), Bytes::from_static(master.as_bytes())), ("360p/index.m3u8".into(), Bytes::from(media.clone())), ("360p/init_0.mp4".into(), noise(1500))];
    for i in 0..SEGMENTS {
        files.push((format!("360p/seg_{i:05}.m4s"), segment.clone()));
    }
    let refs: Vec<(&str, Bytes)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let video = shared::testing::ready_video(&storage, &videos, &pool, &refs).await?;
    // The same objects again, as a private video: played only with a token.
    let private = shared::testing::ready_video(&storage, &videos, &pool, &refs).await?;
    sqlx::query("UPDATE videos SET visibility = 'private' WHERE id = $1").bind(private).execute(&pool).await?;
    let signer: shared::playback::Signer = SIGNING_KEYS.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let token = signer.sign(private, Duration::from_secs(3600));

    let (origin_port, edge_port, nginx_port) = (e2e::free_port(), e2e::free_port(), e2e::free_port());
    let mut env = world.env();
    env.push(("HTTP_ADDR", format!("127.0.0.1:{origin_port}")));
    env.push(("RUST_LOG", "warn".into()));
    env.push(("PLAYBACK_SIGNING_KEYS", SIGNING_KEYS.into()));
    env.push(("CONTENT_MASTER_KEYS", MASTER_KEYS.into()));
    let _origin = spawn("streaming", &env, &scratch.path().join("origin.log"))?;
    let origin = format!("http://127.0.0.1:{origin_port}");
    wait_ready(&format!("{origin}/health/ready")).await?;
    let edge_env = vec![
        ("HTTP_ADDR", format!("127.0.0.1:{edge_port}")),
        ("RUST_LOG", "warn".into()),
        ("ORIGIN_URL", origin.clone()),
        ("REDIS_URL", world.backends.redis.url.expose().to_owned()),
        ("REDIS_PREFIX", world.backends.redis.prefix.clone()),
        ("PURGE_TOKEN", "bench-purge-token-0123456789".into()),
        ("EDGE_DISK_DIR", scratch.path().join("edge-disk").display().to_string()),
        ("PLAYBACK_PUBLIC_KEYS", signer.public_keys()),
        // The world's example secrets (Redis URL…) are refused outside dev.
        ("PLATFORM_ENV", "dev".into()),
    ];
    let signed_objects = [("1 MB segment", "360p/seg_00000.m4s", segment.len()), ("1.5 KB init", "360p/init_0.mp4", 1500)];
    if std::env::args().any(|a| a == "--limiter") {
        return limiter_cost(&edge_env, scratch.path(), &format!("/hls/{video}/360p/index.m3u8"), media.len()).await;
    }
    let edge_process = spawn("cdn-edge", &edge_env, &scratch.path().join("edge.log"))?;
    let edge = format!("http://127.0.0.1:{edge_port}");
    wait_ready(&format!("{edge}/health/ready")).await?;
    if std::env::args().any(|a| a == "--signed") {
        return signed_cost(&edge, edge_process.0.id(), private, video, &token, &signed_objects).await;
    }
    std::fs::write(scratch.path().join("nginx.conf"), nginx_conf(scratch.path(), nginx_port, &format!("127.0.0.1:{origin_port}")))?;
    let _nginx = e2e::front_door::Daemon(Command::new("nginx").args(["-c", &scratch.path().join("nginx.conf").display().to_string(), "-p", &scratch.path().display().to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    let nginx = format!("http://127.0.0.1:{nginx_port}");
    wait_ready(&format!("{nginx}/hls/{video}/360p/index.m3u8")).await.with_context(|| format!("nginx did not start; see {}", scratch.path().join("nginx-error.log").display()))?;

    println!("== cache hits: {CONCURRENCY} keep-alive connections for {}s each, same client for both servers", RUN.as_secs());
    for (label, object, len) in [("4 KB playlist", "360p/index.m3u8", media.len()), ("1 MB segment", "360p/seg_00000.m4s", segment.len())] {
        let path = format!("/hls/{video}/{object}");
        let base = load(&format!("{nginx}{path}"), len).await?;
        let ours = load(&format!("{edge}{path}"), len).await?;
        println!("{label:<14} NGINX proxy_cache (baseline) {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms", base.rps, base.p50_ms, base.p99_ms);
        println!(
            "{label:<14} cdn-edge                     {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms   ratio req/s {:.2}, p99 {:.2}",
            ours.rps,
            ours.p50_ms,
            ours.p99_ms,
            ours.rps / base.rps,
            ours.p99_ms / base.p99_ms
        );
    }

    println!("== time to first byte, 1 MB segment, {TTFB_SAMPLES} sequential requests");
    let seg = format!("/hls/{video}/360p/seg_00001.m4s");
    let (o50, o99) = ttfb(&format!("{origin}{seg}")).await?;
    let (e50, e99) = ttfb(&format!("{edge}{seg}")).await?;
    println!("origin direct (baseline)  p50 {o50:7.2} ms  p99 {o99:7.2} ms");
    println!("edge, cache hit           p50 {e50:7.2} ms  p99 {e99:7.2} ms   ratio p50 {:.2}, p99 {:.2}", e50 / o50, e99 / o99);

    println!("== origin fetches per 1000 viewer requests: {VIEWERS} viewers, each master + playlist + init + {SEGMENTS} segments, through a cold edge");
    // A fresh edge, so the ladder starts cold there.
    let cold_port = e2e::free_port();
    let mut cold_env = edge_env.clone();
    cold_env[0] = ("HTTP_ADDR", format!("127.0.0.1:{cold_port}"));
    cold_env.retain(|(k, _)| *k != "EDGE_DISK_DIR");
    let _cold = spawn("cdn-edge", &cold_env, &scratch.path().join("edge-cold.log"))?;
    let cold = format!("http://127.0.0.1:{cold_port}");
    wait_ready(&format!("{cold}/health/ready")).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let viewers = futures::future::join_all((0..VIEWERS).map(|_| {
        let (client, cold) = (client.clone(), cold.clone());
        async move {
            let m = client.get(format!("{cold}/hls/{video}/master.m3u8")).send().await?.error_for_status()?;
            let sid = m.headers().get("x-session-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            m.bytes().await?;
            let mut n = 1;
            let mut objects = vec!["360p/index.m3u8".to_owned(), "360p/init_0.mp4".to_owned()];
            objects.extend((0..SEGMENTS).map(|i| format!("360p/seg_{i:05}.m4s")));
            for o in objects {
                client.get(format!("{cold}/hls/{video}/{o}?sid={sid}")).send().await?.error_for_status()?.bytes().await?;
                n += 1;
            }
            Ok::<usize, anyhow::Error>(n)
        }
    }))
    .await;
    let requests: usize = viewers.into_iter().collect::<anyhow::Result<Vec<_>>>()?.into_iter().sum();
    let fetches = e2e::scrape(&cold, "edge_origin_fetches_total").await?;
    println!("{requests} viewer requests, {fetches} origin fetches: {:.1} per 1000 (every request to the origin would be 1000)", fetches * 1000.0 / requests as f64);
    limiter_cost(&edge_env, scratch.path(), &format!("/hls/{video}/360p/index.m3u8"), media.len()).await?;
    signed_cost(&edge, edge_process.0.id(), private, video, &token, &signed_objects).await
}
