//! cdn-edge: a caching reverse proxy for `/hls/` in front of the origin.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.
//! - [`cache`] — the byte-bounded object cache and freshness rules.
//! - [`fetch`] — origin requests, coalesced per key.
//! - [`serve`] — the one proxy operation (hits, misses, ranges, 304s).

pub mod cache;
pub mod configuration;
pub mod fetch;
pub mod serve;
pub mod startup;
