//! live-ingest: RTMP publishers in, LL-HLS out. Accepts one publisher per
//! live stream on :1935, transcodes it into the live ladder with one ffmpeg,
//! cuts the encoder's fragments into LL-HLS parts and segments
//! (`media::llhls`), serves them under `/live/` behind the edges with
//! blocking playlist reloads, records every segment to S3 (DVR), and hands
//! the recording to the catalogue as a video when the broadcast ends.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application (HTTP and RTMP).
//! - [`catalogue`] — live streams in PostgreSQL, their keys and states.
//! - [`api`] — `/api/v1/live`: create, list, read, delete.
//! - [`events`] — `/api/v1/live/{id}/events`: state changes as server-sent events.
//! - [`rtmp`] — the RTMP listener and one publisher's connection.
//! - [`flv`] — publisher media as FLV for the encoder; codec checks.
//! - [`input`] — the ingest's real size and rate against the limits.
//! - [`on_air`] — broadcasts on air, who may publish, ending after the grace period.
//! - [`broadcast`] — one broadcast: renditions, publisher, grace.
//! - [`ladder`] — the live ladder as ffmpeg arguments.
//! - [`encoder`] — the supervised ffmpeg of one publish.
//! - [`rendition`] — one rendition's packager and objects.
//! - [`master`] — the live master playlist.
//! - [`origin`] — `/live/` playlists (blocking), parts and segments.
//! - [`dvr`] — segments recorded to S3.
//! - [`replay`] — an ended broadcast's recording into the catalogue.
//! - [`metrics`] — the ingest's series.

pub mod api;
pub mod broadcast;
pub mod catalogue;
pub mod configuration;
pub mod dvr;
pub mod encoder;
pub mod events;
pub mod flv;
pub mod input;
pub mod ladder;
pub mod master;
pub mod metrics;
pub mod on_air;
pub mod origin;
pub mod rendition;
pub mod replay;
pub mod rtmp;
pub mod startup;
