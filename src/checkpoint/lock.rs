//! `.nanobatch/lock`: one run per output directory.
//!
//! The lock is an OS file lock (held for the life of the process, released by the kernel even on
//! SIGKILL) on a file that says who holds it (pid, host, start time). A lock file that is not
//! locked was left by a run that died: on the same host with a dead pid it is taken over, with a
//! note; from another host it is never broken silently (file locks do not cross every network
//! file system), only with `--break-lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::records::now;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on host {}, started {}", self.pid, self.host, self.started)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another nanobatch run is using {} ({holder})", dir.display())]
    Busy { dir: PathBuf, holder: Holder },
    #[error(
        "{} is locked by a run on another host ({holder}); if that run is gone, run again with --break-lock",
        dir.display()
    )]
    OtherHost { dir: PathBuf, holder: Holder },
    #[error("cannot lock {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// Set when a stale lock was taken over.
    pub took_over: Option<Holder>,
}

pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

impl RunLock {
    pub fn acquire(state_dir: &Path, break_lock: bool) -> Result<RunLock, LockError> {
        let path = state_dir.join("lock");
        let io = |e: std::io::Error| LockError::Io { path: path.clone(), reason: crate::fsutil::io_reason(&e) };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let previous: Option<Holder> = serde_json::from_str(&previous).ok();
        let dir = state_dir.parent().unwrap_or(state_dir).to_path_buf();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = previous.unwrap_or(Holder { pid: 0, host: "unknown".into(), started: "unknown".into() });
                return Err(LockError::Busy { dir, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = hostname();
        let took_over = match previous {
            Some(holder) if holder.host != me && !break_lock => {
                let _ = file.unlock();
                return Err(LockError::OtherHost { dir, holder });
            }
            Some(holder)
                if holder.host == me && holder.pid != std::process::id() && pid_alive(holder.pid) && !break_lock =>
            {
                // Alive but not holding the lock: a process that reuses the pid, or one that
                // lost its lock (NFS). Do not guess.
                let _ = file.unlock();
                return Err(LockError::Busy { dir, holder });
            }
            other => other,
        };
        let holder = Holder { pid: std::process::id(), host: me, started: now() };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        let _ = file.sync_all();
        Ok(RunLock { file, path, took_over })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // An empty, unlocked file means "free".
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Whether a process with this pid exists on this host.
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        // Without /proc we cannot tell; assume dead only when the OS lock was free (it was).
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{LockError, RunLock};

    #[test]
    fn second_lock_in_the_same_directory_is_refused_and_explained() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), false).unwrap();
        // A second open file description conflicts with the first's lock.
        let err = RunLock::acquire(dir.path(), false).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }));
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())));
        drop(first);
        assert!(RunLock::acquire(dir.path(), false).is_ok());
    }

    #[test]
    fn stale_lock_from_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let stale = format!("{{\"pid\":999999999,\"host\":\"{}\",\"started\":\"yesterday\"}}", super::hostname());
        std::fs::write(dir.path().join("lock"), stale).unwrap();
        let lock = RunLock::acquire(dir.path(), false).unwrap();
        assert_eq!(lock.took_over.as_ref().unwrap().started, "yesterday");
    }

    #[test]
    fn stale_lock_from_another_host_is_not_broken_silently() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lock"), "{\"pid\":1,\"host\":\"elsewhere\",\"started\":\"t\"}").unwrap();
        let err = RunLock::acquire(dir.path(), false).unwrap_err();
        assert!(matches!(err, LockError::OtherHost { .. }));
        assert!(RunLock::acquire(dir.path(), true).is_ok());
    }
}
