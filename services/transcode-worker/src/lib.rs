//! transcode-worker: takes jobs from RabbitMQ (pushed or pulled) and turns
//! each uploaded source into CMAF HLS and DASH, with thumbnails, in S3, with
//! one ffmpeg process per job. Videos that are not public are HLS AES-128
//! encrypted, HLS-only.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the worker and its health/metrics/admin server.
//! - [`consumer`] — the broker connection; [`push`] and [`pull`] take jobs.
//! - [`settle`] — one delivery: run, then ack, retry or dead-letter.
//! - [`job`] — one job's life: claim, produce, commit, clean up, cancel.
//! - [`outputs`] — what an attempt stores, from one ffmpeg pass.
//! - [`probe`] — ffprobe and input validation.
//! - [`confine`] — ffmpeg and ffprobe kept to the one file they were given.
//! - [`limits`] — what one source may cost: size, shape, rate, pixels, time.
//! - [`rejection`] — the catalogue of reasons a source is refused.
//! - [`ladder`] — which rungs a source gets.
//! - [`ffmpeg`] — the single-pass command and its progress.
//! - [`package`] — measuring outputs; the master playlist.
//! - [`iframes`] — I-frame playlists from the segments' boxes (read by `media::isobmff`).
//! - [`dash`] — the MPD over the same segments.
//! - [`encrypt`] — HLS AES-128 for videos that are not public.
//! - [`thumbnails`] — sprite sheets (tiled here) and their WebVTT track.
//! - [`admin`] — dead-letter endpoints (admin API keys only).
//! - [`metrics`] — per-mode metrics.
//! - [`workdir`] — scratch space, reclaimed after killed workers.

pub mod admin;
pub mod configuration;
pub mod confine;
pub mod consumer;
pub mod dash;
pub mod encrypt;
pub mod ffmpeg;
pub mod iframes;
pub mod job;
pub mod ladder;
pub mod limits;
pub mod metrics;
pub mod outputs;
pub mod package;
pub mod probe;
pub mod pull;
pub mod push;
pub mod rejection;
pub mod settle;
pub mod startup;
pub mod thumbnails;
pub mod workdir;
