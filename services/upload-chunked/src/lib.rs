//! upload-chunked: resumable uploads, a tus 1.0.0 server.
//!
//! Core protocol plus creation, creation-with-upload, creation-defer-length,
//! expiration, checksum (sha1, md5, sha256, crc32), checksum-trailer,
//! termination, concatenation and concatenation-unfinished, at
//! `/api/v1/uploads`. Bytes go to S3 (one multipart upload per tus upload),
//! state to PostgreSQL, progress to Redis; any replica can take any request.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.
//! - [`protocol`] — tus headers, parsed into checked values.
//! - [`error`] — the error catalogue, one problem+json code per failure.
//! - [`handlers`] — one file per tus operation.
//! - [`store`] — the storage trait and its S3 + PostgreSQL implementation.
//! - [`checksum`] — per-chunk checksums and the resumable whole-file SHA-256.
//! - [`finish`] — a complete upload becomes a video.
//! - [`progress`] — progress in Redis for the events stream.
//! - [`sweeper`] — expiry and crash recovery in the background.

pub mod checksum;
pub mod configuration;
pub mod error;
pub mod finish;
pub mod handlers;
pub mod progress;
pub mod protocol;
pub mod startup;
pub mod store;
pub mod sweeper;
