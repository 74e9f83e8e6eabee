//! Media formats the services read and write, as plain code over bytes
//! (no I/O): the worker's I-frame playlists and the live packager read
//! ISO-BMFF boxes, and live streams are packaged as Low-Latency HLS.
//!
//! - [`isobmff`] — just enough MP4 box reading, hostile-input safe;
//! - [`llhls`] — a live rendition's timeline, playlists and request query.

pub mod isobmff;
pub mod llhls;
