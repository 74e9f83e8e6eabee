//! transcode-worker: consumes jobs from RabbitMQ and turns each uploaded
//! source into a CMAF HLS ladder in S3, with one ffmpeg process per job.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the worker and its health/metrics server.
//! - [`consumer`] — AMQP consumption and settlement (ack, retry, dead-letter).
//! - [`job`] — one job end to end.
//! - [`probe`] — ffprobe and input validation.
//! - [`ladder`] — which rungs a source gets.
//! - [`ffmpeg`] — the single-pass command and its progress.
//! - [`package`] — measuring outputs; the master playlist.

pub mod configuration;
pub mod consumer;
pub mod ffmpeg;
pub mod job;
pub mod ladder;
pub mod package;
pub mod probe;
pub mod startup;
