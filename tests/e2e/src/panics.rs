//! A panic anywhere in the stack fails the end-to-end test that was running.
//!
//! A service that panics inside a request or a spawned task often keeps
//! answering (the connection drops, the task dies) and a player that
//! retries hides it, so a green test said nothing about it (issue 19: every
//! edge panicked on the first gzip request for a text object). Every e2e
//! test therefore holds a [`PanicWatch`] from its first line: it remembers
//! how long each log under `.stack/logs/` was, and when the test ends it
//! reads only what was appended since and fails the test with every line
//! saying `panicked at` — the text of both the services' panic hook
//! (`shared::telemetry`) and Rust's default hook.
//!
//! Tests run in parallel, so a panic is blamed on every test that was
//! running when it was logged: the lines printed say which service it was.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a panic leaves in a log, whichever hook wrote it.
pub const PANIC_MARK: &str = "panicked at";

/// At most this many offending lines are kept for the failure message.
const MAX_LINES: usize = 20;

/// Time for a panic caused by the test's last request to reach its log
/// (the hook runs before the connection drops, but the write is another
/// process's).
const SETTLE: Duration = Duration::from_millis(300);

pub struct PanicWatch {
    dir: PathBuf,
    start: HashMap<PathBuf, u64>,
}

impl PanicWatch {
    /// Watches every `*.log` in the native stack's log folder.
    pub fn start() -> Self {
        Self::over(crate::Stack::from_env().stack_dir.join("logs"))
    }

    /// Watches every `*.log` in `dir`; a log that appears later is read whole.
    pub fn over(dir: PathBuf) -> Self {
        let start = logs(&dir).into_iter().map(|p| (p.clone(), len(&p))).collect();
        Self { dir, start }
    }

    /// Lines marked as panics appended since the watch started, as
    /// `log-name: line` (the first [`MAX_LINES`]), and how many there were.
    pub fn panics(&self) -> (Vec<String>, usize) {
        let (mut kept, mut total) = (Vec::new(), 0);
        for log in logs(&self.dir) {
            let from = self.start.get(&log).copied().unwrap_or(0);
            // A log shorter than before was replaced: read it all.
            let from = if len(&log) < from { 0 } else { from };
            let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            scan(&log, from, |line| {
                total += 1;
                if kept.len() < MAX_LINES {
                    kept.push(format!("{name}: {line}"));
                }
            });
        }
        (kept, total)
    }
}

impl Drop for PanicWatch {
    fn drop(&mut self) {
        std::thread::sleep(SETTLE);
        let (lines, total) = self.panics();
        if total == 0 {
            return;
        }
        let report = format!("{total} line(s) saying '{PANIC_MARK}' in {} during this test:\n{}", self.dir.display(), lines.join("\n"));
        // A test that already failed keeps its own message; this one is added.
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            panic!("{report}");
        }
    }
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
    out.sort();
    out
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Calls `found` with each line from byte `from` on that holds the mark,
/// one line in memory at a time (an access log can grow by megabytes in a test).
fn scan(path: &Path, from: u64, mut found: impl FnMut(&str)) {
    let Ok(mut file) = std::fs::File::open(path) else { return };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return;
    }
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = String::from_utf8_lossy(&line);
        if text.contains(PANIC_MARK) {
            found(text.trim_end());
        }
        line.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn only_panics_logged_after_the_start_count() {
        let dir = tempfile::tempdir().unwrap();
        let edge = dir.path().join("cdn-edge-1.log");
        append(&edge, "thread 'tokio-runtime-worker' panicked at old.rs:1:1:\nbefore the test\n");
        append(&dir.path().join("notes.txt"), "panicked at but not a log\n");
        let watch = PanicWatch::over(dir.path().to_owned());
        assert_eq!(watch.panics().1, 0, "what was there before does not count");

        append(&edge, "{\"level\":\"INFO\",\"message\":\"fine\"}\n{\"level\":\"ERROR\",\"fields\":{\"message\":\"panicked at serve.rs:9:5: boom\"}}\n");
        append(&dir.path().join("streaming.log"), "thread 'main' panicked at hls.rs:3:3:\n");
        let (lines, total) = watch.panics();
        assert_eq!(total, 2, "{lines:?}");
        assert!(lines[0].starts_with("cdn-edge-1.log: ") && lines[0].contains("serve.rs:9:5"), "{lines:?}");
        assert!(lines[1].starts_with("streaming.log: thread 'main' panicked at hls.rs"), "{lines:?}");
        // Defused: the failure itself is checked below.
        std::mem::forget(watch);
    }

    #[test]
    #[should_panic(expected = "1 line(s) saying 'panicked at'")]
    fn a_panic_logged_during_the_test_fails_it_when_the_watch_drops() {
        let dir = tempfile::tempdir().unwrap();
        let _watch = PanicWatch::over(dir.path().to_owned());
        append(&dir.path().join("origin.log"), "thread 'x' panicked at a.rs:1:1:\n");
    }

    #[test]
    fn a_quiet_test_passes() {
        let dir = tempfile::tempdir().unwrap();
        let _watch = PanicWatch::over(dir.path().to_owned());
        append(&dir.path().join("origin.log"), "all good\n");
    }
}
