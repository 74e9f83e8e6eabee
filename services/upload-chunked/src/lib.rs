//! upload-chunked: the home of resumable (tus 1.0) uploads.
//!
//! This is the running skeleton the platform is deployed with: typed config,
//! health, metrics, graceful shutdown, and the same dependencies the tus
//! server will use. `/api/v1/uploads` answers 501 with a problem body until
//! the tus protocol lands, so nothing pretends to accept an upload.
//!
//! - [`configuration`] — settings.
//! - [`startup`] — builds the application.

pub mod configuration;
pub mod startup;
