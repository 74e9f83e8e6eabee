//! Scratch space. A job's folder is named after the worker's pid, so a
//! worker starting on a shared WORK_DIR can tell the folders of workers that
//! were killed (their pid is gone) from those of workers still running, and
//! reclaims only the former: a SIGKILL must not leak gigabytes of sources.

use std::path::Path;

use uuid::Uuid;

pub fn job_prefix(video: Uuid) -> String {
    format!("job-{}-{video}-", std::process::id())
}

fn pid_of(name: &str) -> Option<i32> {
    name.strip_prefix("job-")?.split('-').next()?.parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
}

/// Removes job folders of dead workers; returns how many.
pub fn reclaim(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = pid_of(&name) {
            if pid != std::process::id() as i32 && !alive(pid) && std::fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_dead_workers_are_reclaimed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let v = Uuid::now_v7();
        std::fs::create_dir(dir.path().join(format!("job-{dead}-{v}-abc"))).unwrap();
        std::fs::create_dir(dir.path().join(format!("{}abc", job_prefix(v)))).unwrap();
        std::fs::create_dir(dir.path().join("unrelated")).unwrap();
        assert_eq!(reclaim(dir.path()), 1);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2);
    }
}
