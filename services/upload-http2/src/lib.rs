//! upload-http2: creators stream a video as one request body (raw or
//! multipart/form-data, HTTP/1.1 or HTTP/2); it lands in S3 through a
//! bounded-memory multipart upload, becomes a video row and a transcode job.
//! This service also owns the read side of `/api/v1/videos`.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application (clients, router, background tasks).
//! - [`routes`] — one handler per operation.
//! - [`intake`] — request body → S3 object, for raw and multipart bodies.
//! - [`error`] — this service's problem catalogue.

pub mod configuration;
pub mod error;
pub mod intake;
pub mod routes;
pub mod startup;
