//! The DVR recorder: every complete segment and init segment of a broadcast
//! goes to S3 as it completes, under `live/{broadcast}/{rendition}/`, in
//! order, by one uploader per broadcast. Viewers seeking back further than
//! memory holds are served from there, and the replay is built from it.
//!
//! The queue is bounded: if S3 falls that far behind, an object is dropped
//! from the recording (counted and logged) rather than holding the live
//! path back; live viewers are served from memory either way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use media::llhls::names::Object;
use shared::storage::Storage;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::metrics::LiveMetrics;

/// Objects waiting for S3, per broadcast (a few segments of every rendition).
const QUEUE: usize = 256;
const ATTEMPTS: u32 = 4;

pub fn prefix(broadcast: Uuid) -> String {
    format!("live/{broadcast}/")
}

pub fn key(broadcast: Uuid, rendition: &str, object: Object) -> String {
    format!("live/{broadcast}/{rendition}/{object}")
}

/// A segment that reached S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub rendition: String,
    pub msn: u64,
    pub generation: u32,
}

enum Job {
    Put { key: String, bytes: Bytes, content_type: &'static str, recorded: Option<Recorded> },
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Recorder {
    broadcast: Uuid,
    tx: mpsc::Sender<Job>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    metrics: LiveMetrics,
}

impl Recorder {
    /// Starts the uploader of `broadcast`; it ends when every clone is dropped.
    pub fn start(storage: Storage, broadcast: Uuid, metrics: LiveMetrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let recorded = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(upload(storage, rx, recorded.clone(), metrics.clone()));
        Self { broadcast, tx, recorded, metrics }
    }

    fn enqueue(&self, job: Job) {
        if let Err(e) = self.tx.try_send(job) {
            if let mpsc::error::TrySendError::Full(Job::Put { key, .. }) = e {
                self.metrics.dvr_dropped.inc();
                tracing::error!(key, "DVR queue full (S3 too slow): this object is missing from the recording");
            }
        }
    }

    pub fn init(&self, rendition: &str, generation: u32, bytes: Bytes) {
        let key = key(self.broadcast, rendition, Object::Init { generation });
        self.enqueue(Job::Put { key, bytes, content_type: "video/mp4", recorded: None });
    }

    pub fn segment(&self, rendition: &str, msn: u64, generation: u32, bytes: Bytes) {
        let key = key(self.broadcast, rendition, Object::Segment { msn });
        let recorded = Some(Recorded { rendition: rendition.to_owned(), msn, generation });
        self.enqueue(Job::Put { key, bytes, content_type: "video/iso.segment", recorded });
    }

    /// Waits until everything queued before it is in S3 (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The segments in S3, in the order they were written.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn upload(storage: Storage, mut rx: mpsc::Receiver<Job>, recorded: Arc<Mutex<Vec<Recorded>>>, metrics: LiveMetrics) {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::Put { key, bytes, content_type, recorded: r } => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match storage.put_bytes(&key, bytes.clone(), content_type).await {
                        Ok(()) => {
                            metrics.dvr_bytes.inc_by(bytes.len() as u64);
                            if let Some(r) = r {
                                recorded.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                            }
                            break;
                        }
                        Err(e) if attempt < ATTEMPTS => {
                            tracing::warn!(key, attempt, error = format!("{e:#}"), "DVR upload failed; retrying");
                            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                        }
                        Err(e) => {
                            metrics.dvr_dropped.inc();
                            tracing::error!(key, error = format!("{e:#}"), "DVR upload failed for good: this object is missing from the recording");
                            break;
                        }
                    }
                }
            }
        }
    }
}
