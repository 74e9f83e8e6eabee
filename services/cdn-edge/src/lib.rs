//! cdn-edge: a caching reverse proxy for `/hls/` in front of the origin, or
//! of a parent edge.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.
//! - [`object`] — a cached response and its freshness (max-age, stale windows).
//! - [`memory`] — the byte-bounded memory tier.
//! - [`disk`] — the byte-bounded disk tier that survives restarts.
//! - [`negative`] — 404s remembered briefly.
//! - [`tiers`] — both tiers (and the remembered 404s) as one store.
//! - [`fetch`] — the origin client.
//! - [`flight`] — request coalescing, streaming to every waiter.
//! - [`budget`] — the bytes in-flight fetches may buffer.
//! - [`serve`] — the one proxy operation (hits, misses, stale, ranges, 304s).
//! - [`access`] — signed playback: which answers need a token, and checking it.
//! - [`purge`] — the purge API and the channel that carries it to every edge.
//! - [`metrics`] — the edge's series.

pub mod access;
pub mod budget;
pub mod configuration;
pub mod disk;
pub mod fetch;
pub mod flight;
pub mod memory;
pub mod metrics;
pub mod negative;
pub mod object;
pub mod purge;
pub mod serve;
pub mod startup;
pub mod tiers;
