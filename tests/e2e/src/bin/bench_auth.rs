//! What the API key check adds to a request (issue 12's goal: ≤ 1 ms at the
//! 99th percentile on the upload path). Not a test: `scripts/bench-auth`.
//!
//! One run, one process, real HTTP over loopback, a fresh database: the same
//! trivial POST route served twice, once bare and once behind the shared
//! authentication layer, requests interleaved one by one so machine noise
//! hits both alike. Two cases:
//!
//! - warm: one key, looked up once, then from the layer's cache (what every
//!   request after an upload's first costs);
//! - cold: a different key on every request (each a PostgreSQL lookup, as
//!   after `AUTH_CACHE_TTL` or on a replica that has not seen the key).
//!
//! Printed: p50 and p99 of each route, the p99 difference (the added
//! latency) against the 1 ms budget, and this process's CPU share (the load
//! generator is this process, one request at a time, so it is not saturated).

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use shared::auth::{AuthSettings, Role};
use shared::configuration::Seconds;
use shared::testing::World;

const REQUESTS: usize = 4000;

fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    e2e::percentile(&ms, p)
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/api/v1/videos")
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0) + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let world = World::new().await;
    let pool = world.backends.database.pool()?;
    let auth = AuthSettings { cache_ttl: Seconds(Duration::from_secs(60)) }.authenticator(pool);
    let route = || Router::new().route("/api/v1/videos", post(|| async { "ok" }));
    let bare = serve(route()).await;
    let guarded = serve(route().layer(axum::middleware::from_fn_with_state(auth.clone(), shared::auth::authenticate))).await;

    let (warm_key, _) = world.api_key(Role::Creator).await;
    let mut cold_keys = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        cold_keys.push(auth.keys().create(None, Role::Creator, "bench").await?.0);
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let time = |url: String, key: String| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let r = client.post(url).header("authorization", format!("Bearer {key}")).body("x").send().await.expect("answer");
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.expect("body");
            started.elapsed()
        }
    };
    // Warm-up: connections, the warm key's first lookup.
    for _ in 0..200 {
        time(bare.clone(), warm_key.expose().to_owned()).await;
        time(guarded.clone(), warm_key.expose().to_owned()).await;
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    println!("case   route    p50 ms   p99 ms");
    for (case, keys) in [("warm", vec![warm_key.expose().to_owned(); REQUESTS]), ("cold", cold_keys.iter().map(|k| k.expose().to_owned()).collect())] {
        let (mut without, mut with) = (Vec::with_capacity(REQUESTS), Vec::with_capacity(REQUESTS));
        for key in keys {
            without.push(time(bare.clone(), key.clone()).await);
            with.push(time(guarded.clone(), key).await);
        }
        let (b50, b99) = (percentile_ms(&mut without, 0.5), percentile_ms(&mut without, 0.99));
        let (g50, g99) = (percentile_ms(&mut with, 0.5), percentile_ms(&mut with, 0.99));
        println!("{case}   bare     {b50:7.3}  {b99:7.3}");
        println!("{case}   with key {g50:7.3}  {g99:7.3}");
        let added = g99 - b99;
        println!("{case}: the key check adds {added:.3} ms at p99 ({:.2} × the 1 ms budget)", added / 1.0);
    }
    let wall = wall0.elapsed().as_secs_f64();
    println!("generator and servers (one process): {:.0} % of one core over {wall:.1} s", 100.0 * (cpu_seconds() - cpu0) / wall);
    Ok(())
}
