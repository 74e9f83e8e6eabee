//! The encoder of one publish: ffmpeg running the ladder, fed FLV on stdin,
//! each rendition read from its own pipe into its [`Rendition`].
//!
//! It is supervised: if ffmpeg dies, a rendition's output cannot be
//! packaged, or the publisher's timestamps jump, ffmpeg is replaced and
//! every rendition continues after a discontinuity with a new init
//! segment; the new ffmpeg gets the codec headers again and starts at the
//! next key frame. More than `max_restarts` failures in one publish, and
//! the publisher is dropped. Under load it degrades instead of lagging:
//! media more than 3 s behind the publisher's real time (measured from its
//! timestamps against our clock) is dropped until the feed's backlog is
//! gone, and a new ffmpeg starts at the next key frame, so latency stays
//! bounded. The publisher's clock is measured again from there: a publisher
//! that paused, or whose clock drifts, is behind for good by the old
//! measure, and would otherwise never be fresh enough to start again.
//! Audio and video timestamps are each checked for jumps (either way). Memory is bounded by the feed's capacity in tags
//! (the publisher's socket waits when it is full) and the pipes' buffers.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::configuration::Settings;
use crate::flv::{self, Tag};
use crate::ladder::{self, Output};
use crate::metrics::LiveMetrics;
use crate::rendition::Rendition;

/// Tags waiting for the encoder: about two seconds of a busy stream.
pub const FEED_TAGS: usize = 256;
/// A timestamp step larger than this, either way, is a break in the source.
const JUMP_MS: i64 = 5_000;
/// How far behind the publisher's real time the encoder may fall (media
/// queued in the feed and the socket, or an encoder short of CPU) before
/// the backlog is dropped: latency stays bounded under load instead of
/// growing for the rest of the broadcast.
const BEHIND_MS: i64 = 3_000;

/// Why one ffmpeg run stopped.
enum Stop {
    /// The publisher is gone: finished cleanly.
    Done,
    /// A failure: counts towards `max_restarts`.
    Restart(String),
    /// Fell behind real time (or the source's clock jumped): not a failure;
    /// the next run starts from fresh media.
    Resync(String),
}

/// Where the publisher's clock stood against ours: its timestamp at a
/// wall-clock instant. A tag's lag is how much more wall time than media
/// time has passed since.
#[derive(Clone, Copy)]
struct Anchor {
    ts: u32,
    at: std::time::Instant,
}

impl Anchor {
    fn lag_ms(&self, ts: u32) -> i64 {
        self.at.elapsed().as_millis() as i64 - i64::from(ts.wrapping_sub(self.ts) as i32)
    }
}

pub struct Encoder {
    pub settings: Arc<Settings>,
    pub outputs: Vec<Output>,
    pub renditions: Vec<Arc<Rendition>>,
    pub audio: bool,
    pub metrics: LiveMetrics,
    pub broadcast: uuid::Uuid,
    pub slot: Arc<tokio::sync::Mutex<()>>,
}

impl Encoder {
    /// Runs until the feed closes; an error: it failed too often.
    pub async fn run(self, mut feed: mpsc::Receiver<Tag>) -> Result<(), String> {
        let _slot = self.slot.clone().lock_owned().await;
        let mut headers: Vec<Tag> = Vec::new();
        let mut restarts = 0u32;
        let mut catch_up = false;
        loop {
            let stop = self.once(&mut feed, &mut headers, catch_up).await;
            catch_up = matches!(stop, Stop::Resync(_));
            match stop {
                Stop::Done => return Ok(()),
                Stop::Resync(why) => {
                    self.metrics.encoder_restarts.inc();
                    tracing::warn!(broadcast = %self.broadcast, why, "restarting the live encoder on fresh media; renditions continue after a discontinuity");
                    for r in &self.renditions {
                        r.restart();
                    }
                }
                Stop::Restart(why) => {
                    restarts += 1;
                    self.metrics.encoder_restarts.inc();
                    tracing::warn!(broadcast = %self.broadcast, restarts, why, "restarting the live encoder; renditions continue after a discontinuity");
                    for r in &self.renditions {
                        r.restart();
                    }
                    if restarts > self.settings.encoder.max_restarts {
                        return Err(format!("the encoder failed {restarts} times in this publish (last: {why})"));
                    }
                }
            }
        }
    }

    /// One ffmpeg, until it stops. `catch_up`: the last one was stopped to
    /// resync, so tags queued in the feed are dropped until it is empty.
    async fn once(&self, feed: &mut mpsc::Receiver<Tag>, headers: &mut Vec<Tag>, mut catch_up: bool) -> Stop {
        let (mut child, mut stdin, mut readers) = match self.spawn() {
            Ok(x) => x,
            Err(e) => return Stop::Restart(format!("could not start ffmpeg: {e:#}")),
        };
        let mut out = flv::header(self.audio).to_vec();
        for h in headers.iter() {
            out.extend_from_slice(&flv::encode(h, 0));
        }
        if let Err(e) = stdin.write_all(&out).await {
            return Stop::Restart(format!("ffmpeg's stdin closed at once: {e}"));
        }
        let mut base: Option<u32> = None;
        // The previous timestamp of each kind (audio, video), and where the publisher's clock stood against ours.
        let mut last: [Option<u32>; 2] = [None; 2];
        let mut anchor: Option<Anchor> = None;
        let stop = loop {
            tokio::select! {
                msg = feed.recv() => {
                    let Some(tag) = msg else { break Stop::Done };
                    if tag.is_sequence_header() {
                        headers.retain(|h| h.kind != tag.kind);
                        headers.push(tag.clone());
                        if stdin.write_all(&flv::encode(&tag, 0)).await.is_err() {
                            break Stop::Restart("ffmpeg stopped reading".into());
                        }
                        continue;
                    }
                    let kind = usize::from(tag.kind == flv::Kind::Video);
                    if let Some(l) = last[kind].replace(tag.timestamp) {
                        let step = i64::from(tag.timestamp.wrapping_sub(l) as i32);
                        if step.abs() > JUMP_MS {
                            break Stop::Resync(format!("the publisher's timestamps jumped by {step} ms"));
                        }
                    }
                    if catch_up {
                        // The backlog is what was queued while the last encoder fell behind.
                        if !feed.is_empty() {
                            continue;
                        }
                        catch_up = false;
                    }
                    let a = *anchor.get_or_insert(Anchor { ts: tag.timestamp, at: std::time::Instant::now() });
                    let lag = a.lag_ms(tag.timestamp);
                    if base.is_some() && lag > BEHIND_MS {
                        break Stop::Resync(format!("the encoder fell {lag} ms behind the publisher's real time; the backlog is dropped"));
                    }
                    // Start at a key frame, with the audio from then on.
                    let Some(b) = base.or_else(|| tag.is_key_frame().then_some(tag.timestamp)) else { continue };
                    base = Some(b);
                    let rel = tag.timestamp.wrapping_sub(b);
                    if (rel as i32) < 0 {
                        continue;
                    }
                    if stdin.write_all(&flv::encode(&tag, rel)).await.is_err() {
                        break Stop::Restart("ffmpeg stopped reading".into());
                    }
                }
                done = readers.join_next(), if !readers.is_empty() => {
                    match done {
                        Some(Ok(Err(e))) => break Stop::Restart(format!("{e:#}")),
                        _ => break Stop::Restart("ffmpeg closed an output early".into()),
                    }
                }
                status = child.wait() => {
                    break Stop::Restart(format!("ffmpeg exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())));
                }
            }
        };
        match stop {
            Stop::Done => {
                // Let ffmpeg flush its last fragments, then read them to the end.
                drop(stdin);
                let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    while let Some(r) = readers.join_next().await {
                        if let Ok(Err(e)) = r {
                            tracing::warn!(error = format!("{e:#}"), "last fragments could not be packaged");
                        }
                    }
                    let _ = child.wait().await;
                })
                .await;
                if drained.is_err() {
                    let _ = child.kill().await;
                }
                Stop::Done
            }
            other => {
                let _ = child.kill().await;
                readers.abort_all();
                other
            }
        }
    }

    /// ffmpeg with one pipe per rendition on fds 3, 4, …, and a reader per pipe.
    fn spawn(&self) -> anyhow::Result<(Child, ChildStdin, JoinSet<anyhow::Result<()>>)> {
        let mut reads = Vec::new();
        let mut writes: Vec<OwnedFd> = Vec::new();
        for _ in &self.outputs {
            let (r, w) = pipe_pair()?;
            reads.push(r);
            writes.push(w);
        }
        let raw: Vec<RawFd> = writes.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        let args = ladder::arguments(&self.settings.encoder, self.settings.packaging.part_target.0, &self.outputs);
        let mut cmd = Command::new(&self.settings.encoder.ffmpeg);
        cmd.args(&args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, (ladder::FIRST_FD + i) as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("{}: {e}", self.settings.encoder.ffmpeg))?;
        // Ours closed, so each reader sees the end when ffmpeg's copy closes.
        drop(writes);
        let stdin = child.stdin.take().expect("piped");
        if let Some(stderr) = child.stderr.take() {
            let b = self.broadcast;
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(broadcast = %b, ffmpeg = line, "live encoder said");
                }
            });
        }
        let mut readers = JoinSet::new();
        for (fd, r) in reads.into_iter().zip(&self.renditions) {
            let (r, parts) = (r.clone(), self.metrics.parts.clone());
            let mut rx = pipe::Receiver::from_owned_fd(fd)?;
            readers.spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = rx.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    parts.inc();
                    r.ingest(&buf[..n], SystemTime::now()).map_err(|e| e.context(format!("rendition {}", r.name)))?;
                }
            });
        }
        Ok((child, stdin, readers))
    }
}

/// A pipe whose write end sits at fd 100 or above (so the child's dup2 onto
/// 3, 4, … never overwrites another write end), both ends close-on-exec.
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let high = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&w), libc::F_DUPFD_CLOEXEC, 100) };
    if high < 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(w);
    Ok((r, unsafe { OwnedFd::from_raw_fd(high) }))
}
