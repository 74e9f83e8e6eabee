//! streaming: the HLS origin. Serves `/hls/{video_id}/...` from S3 for ready
//! videos with full HTTP semantics, issues viewer sessions with the master
//! playlist, caps bitrates under load, and steers players between pathways.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.
//! - [`hls`] — objects: ranges, validators, media types, session tagging.
//! - [`master`] — the per-viewer master playlist (session, cap, pathways).
//! - [`cap`] — server-side bitrate adaptation from egress and viewers.
//! - [`steering`] — the Content Steering server and the play API.
//! - [`viewers`] — live viewer and view counts.
//! - [`metrics`] — the origin's series.

pub mod cap;
pub mod configuration;
pub mod hls;
pub mod master;
pub mod metrics;
pub mod startup;
pub mod steering;
pub mod viewers;
