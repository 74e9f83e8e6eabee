//! streaming: the HLS origin. Serves `/hls/{video_id}/...` from S3 for ready
//! videos with full HTTP semantics, issues viewer sessions with the master
//! playlist, caps bitrates under load, steers players between pathways, and
//! signs and checks playback of unlisted and private videos.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.
//! - [`access`] — who may fetch a video's objects: catalogue facts, tokens.
//! - [`hls`] — objects: ranges, validators, media types, session tagging.
//! - [`key`] — the content key of an encrypted video.
//! - [`master`] — the per-viewer master playlist (session, cap, pathways).
//! - [`live`] — the same for live streams' masters, read from live-ingest.
//! - [`cap`] — server-side bitrate adaptation from egress and viewers.
//! - [`steering`] — the Content Steering server and the play API.
//! - [`viewers`] — live viewer and view counts.
//! - [`metrics`] — the origin's series.

pub mod access;
pub mod cap;
pub mod configuration;
pub mod hls;
pub mod key;
pub mod live;
pub mod master;
pub mod metrics;
pub mod startup;
pub mod steering;
pub mod viewers;
