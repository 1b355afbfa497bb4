//! Checkpoints: the run directory's state under `<out>/.nanobatch/` — the append-only journal,
//! the plan snapshot, the lock, conversation turns — the atomic output store, and resume.
//!
//! Invariants: an artifact is durable (fsynced, renamed, directory synced) before its journal
//! record is written; the journal is written only by the dispatcher; resume is a pure function
//! of (plan, journal, files).

pub mod adopt;
pub mod fresh;
pub mod journal;
pub mod lock;
pub mod records;
pub mod resume;
pub mod snapshot;
pub mod store;
pub mod superseded;

use std::path::{Path, PathBuf};

/// The state directory's name inside a run directory.
pub const STATE_DIR: &str = ".nanobatch";

/// Paths of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> RunDir {
        RunDir { root: root.to_path_buf() }
    }

    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub fn journal(&self) -> PathBuf {
        self.state().join("journal.jsonl")
    }

    pub fn plan(&self) -> PathBuf {
        self.state().join("plan.jsonl")
    }

    /// Relative to the root: where a conversation turn is kept.
    pub fn turn_rel(fingerprint_hex: &str) -> String {
        format!(".nanobatch/turns/{fingerprint_hex}.json")
    }

    pub fn thumbs_rel() -> &'static str {
        ".nanobatch/thumbs"
    }

    /// The review marks (`nanobatch review`, `nanobatch mark`).
    pub fn review_log(&self) -> PathBuf {
        self.state().join("review.jsonl")
    }

    pub fn report_json(&self) -> PathBuf {
        self.root.join("report.json")
    }

    pub fn report_html(&self) -> PathBuf {
        self.root.join("report.html")
    }

    /// Whether this directory holds a nanobatch run.
    pub fn exists(&self) -> bool {
        self.journal().exists() || self.plan().exists()
    }
}
