//! Low-Latency HLS packaging for live streams (RFC 8216bis, Low-Latency profile):
//!
//! - [`timeline`] — one rendition's segments and parts in the DVR window,
//!   and where a blocking request stands against them;
//! - [`render`] — its media playlist: server control, parts, preload hint,
//!   rendition reports, delta updates;
//! - [`request`] — the playlist request's `_HLS_msn`, `_HLS_part` and
//!   `_HLS_skip`, parsed once (the origin waits on them, the edge coalesces on them);
//! - [`names`] — the rendition's object names, written and parsed in one place;
//! - [`packager`] — an encoder's fragmented MP4 cut into the init segment,
//!   parts and segments, fed into the timeline.
//!
//! Sans-IO: no clock, no sockets, no waiting; the live origin wraps it.
//!
//! Written here rather than taken from a crate: the one LL-HLS server crate
//! found on crates.io (`ll-hls-runtime` 0.1, one author, weeks old) renders a
//! single rendition with no rendition reports, and gohlslib (Go, MediaMTX's)
//! could only be read. The rules followed are cited where they apply.

pub mod names;
pub mod packager;
pub mod render;
pub mod request;
pub mod timeline;
