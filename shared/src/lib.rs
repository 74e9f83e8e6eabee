//! Everything the services share, written once.
//!
//! - [`auth`] — API keys, principals and roles; the layer every service authenticates with.
//! - [`backends`] — PostgreSQL, RabbitMQ, S3 and Redis, connected together.
//! - [`budget`] — a service's budget of concurrent uploads and upload bytes in flight.
//! - [`pace`] — minimum body rate, idle limit and deadline of an upload request.
//! - [`configuration`] — typed settings from the environment, `--list-env`.
//! - [`error`] — RFC 9457 problem+json responses.
//! - [`extract`] — path values parsed into newtypes at the boundary.
//! - [`telemetry`] — tracing, OTLP export, trace context over HTTP and AMQP.
//! - [`db`] — PostgreSQL pool and migrations.
//! - [`delivery`] — CORS and manifest gzip, for the origin and the edges.
//! - [`queue`] — RabbitMQ topology, job message, confirmed publisher, dead letters.
//! - [`storage`] — S3 client and the bounded-memory multipart writer.
//! - [`layout`] — the bucket's key layout.
//! - [`playback`] — signed playback tokens and wrapped content keys.
//! - [`purge`] — the edge purge message any service can publish.
//! - [`secrets`] — example secrets refused outside `PLATFORM_ENV=dev`.
//! - [`playlist`] — per-viewer rewriting of HLS playlists (sessions, cap, pathways).
//! - [`range`] — HTTP byte ranges.
//! - `rawhttp` (feature `testing`) — a raw HTTP/1.1 client that times each body byte.
//! - [`ratelimit`] — per-client rate limits and who the client is behind the proxies.
//! - [`cache`] — Redis (progress, counters).
//! - [`sessions`] — viewer sessions and live counts, in Redis.
//! - [`health`] — readiness probes.
//! - [`metrics`] — Prometheus registry and HTTP metrics.
//! - [`server`] — the HTTP server wrapper every service runs in.
//! - [`videos`] — the catalogue and the upload intake.
//! - [`transcodes`] — a transcode's transitions: claim, commit, fail, revive.
//! - [`reconcile`] — upload bytes no row knows (a crash mid-upload), removed.
//! - [`watch`] — one watcher per id fanned out to event-stream subscribers, capped.

pub mod auth;
pub mod backends;
pub mod budget;
pub mod cache;
pub mod configuration;
pub mod db;
pub mod delivery;
pub mod error;
pub mod extract;
pub mod health;
pub mod layout;
pub mod linger;
pub mod metrics;
pub mod pace;
pub mod playback;
pub mod playlist;
pub mod purge;
pub mod queue;
pub mod range;
#[cfg(feature = "testing")]
pub mod rawhttp;
pub mod ratelimit;
pub mod reconcile;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod storage;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transcodes;
pub mod videos;
pub mod watch;
