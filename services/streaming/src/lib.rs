//! streaming: the HLS origin. Serves `/hls/{video_id}/...` from S3 for ready
//! videos only, with the headers caches need (Content-Type, Content-Length,
//! ETag, Last-Modified, Cache-Control).
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.
//! - [`hls`] — the one read operation, and the path newtype it parses.

pub mod configuration;
pub mod hls;
pub mod startup;
