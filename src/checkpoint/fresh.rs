//! `run --fresh`: what starting over deletes, decided before anything is deleted.
//!
//! Only what this manifest's runs recorded in the journal goes: the images and sidecars of
//! their task records (and the earlier images they kept under `.nanobatch/superseded/`), and
//! only while each file is still the one recorded (size and time, else its content hash; a
//! sidecar naming the record's fingerprint), a regular file inside the output directory (no
//! `..`, no absolute path, no symbolic link out). Runs of other manifests sharing the directory
//! keep their records and files. A run with server-side batch jobs still open cannot start over:
//! forgetting them would pay for their tasks twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::RunDir;
use super::journal::{self, JournalError, JournalWriter};
use super::records::{OutputRecord, Record};
use super::resume::JournalState;
use crate::digest;
use crate::fsutil::{self, FsError};
use crate::report::sidecar::SidecarRead;

/// What `--fresh` would do in a run directory.
#[derive(Debug, Default)]
pub struct StartOver {
    /// Images and sidecars to delete, each checked to be the recorded file inside the directory.
    pub files: Vec<PathBuf>,
    /// Of `files`, the images.
    pub images: usize,
    /// Recorded outputs left alone: changed since, gone, or outside the directory.
    pub kept: usize,
    /// Conversation turns of this manifest's tasks.
    pub turns: Vec<PathBuf>,
    /// Records of other manifests' runs, kept in the journal.
    pub others: Vec<Record>,
    /// Manifests of those runs, as recorded.
    pub other_manifests: Vec<String>,
    /// Server-side batch jobs of this manifest still open (starting over is refused).
    pub open_batches: Vec<String>,
    /// There is state to forget at all.
    pub has_state: bool,
}

/// Works out what starting over deletes for `manifest` in `run_dir`.
pub fn plan(run_dir: &RunDir, manifest: &Path) -> Result<StartOver, JournalError> {
    let mut out =
        StartOver { has_state: run_dir.journal().exists() || run_dir.plan().exists(), ..StartOver::default() };
    let Some(contents) = journal::read(&run_dir.journal())? else { return Ok(out) };
    let root = &run_dir.root;
    let canonical_root = root.canonicalize().unwrap_or_else(|_| root.clone());
    let mut own = Vec::new();
    let mut current_is_ours = true;
    for record in contents.records {
        if let Record::Run(run) = &record {
            current_is_ours = same_manifest(&run.manifest, manifest);
            if !current_is_ours && !out.other_manifests.contains(&run.manifest) {
                out.other_manifests.push(run.manifest.clone());
            }
        }
        if current_is_ours { own.push(record) } else { out.others.push(record) }
    }
    let state = JournalState::from_records(&own);
    out.open_batches = state.open_batches().iter().map(|b| b.name.clone()).collect();
    out.open_batches.extend(state.batch_intents.keys().cloned());
    let mut seen = HashSet::new();
    for record in &own {
        let (outputs, fp) = match record {
            Record::Task(t) => (&t.outputs, t.fp.as_str()),
            Record::Superseded(s) => (&s.outputs, s.fp.as_str()),
            _ => continue,
        };
        for output in outputs {
            if !seen.insert(output.path.clone()) {
                continue;
            }
            match recorded_file(root, &canonical_root, output) {
                Some(image) => {
                    out.files.push(image);
                    out.images += 1;
                    if let Some(sidecar) = own_sidecar(root, &canonical_root, &output.sidecar, fp) {
                        out.files.push(sidecar);
                    }
                }
                None => out.kept += usize::from(root.join(&output.path).exists()),
            }
        }
        if let Record::Task(t) = record
            && let Some(turn) = &t.turn
            && let Some(path) = inside(root, &canonical_root, turn)
        {
            out.turns.push(path);
        }
    }
    out.files.sort();
    out.files.dedup();
    Ok(out)
}

/// Deletes what [`plan`] found and forgets this manifest's runs: the journal keeps only other
/// manifests' records (rewritten atomically), the plan snapshot, reports and caches go.
pub fn execute(run_dir: &RunDir, start: &StartOver) -> Result<usize, FsError> {
    let mut deleted = 0;
    for f in start.files.iter().chain(&start.turns) {
        if fsutil::remove_file(f).is_ok() {
            deleted += 1;
        }
    }
    if start.others.is_empty() {
        let _ = fsutil::remove_file(&run_dir.journal());
    } else {
        rewrite_journal(run_dir, &start.others)?;
    }
    for state_file in [run_dir.plan(), run_dir.report_json(), run_dir.report_html()] {
        let _ = fsutil::remove_file(&state_file);
    }
    let caches: &[&str] = if start.others.is_empty() { &["turns", "thumbs", "batches"] } else { &["thumbs"] };
    for sub in caches {
        let _ = fsutil::remove_dir_all(&run_dir.state().join(sub));
    }
    Ok(deleted)
}

/// The journal with only `records` (and a fresh header), replacing the old one in one rename.
fn rewrite_journal(run_dir: &RunDir, records: &[Record]) -> Result<(), FsError> {
    let temp = run_dir.state().join(format!("{}journal.jsonl", fsutil::TEMP_PREFIX));
    let _ = std::fs::remove_file(&temp);
    let mut writer = JournalWriter::open(&temp).map_err(journal_fs)?;
    for record in records {
        writer.append(record);
    }
    writer.commit()?;
    drop(writer);
    std::fs::rename(&temp, run_dir.journal()).map_err(|e| FsError::new("cannot rename into", &run_dir.journal(), e))?;
    fsutil::sync_directory(&run_dir.state())
}

fn journal_fs(e: JournalError) -> FsError {
    match e {
        JournalError::Fs(fs) => fs,
        other => FsError::new("cannot write", Path::new("journal"), std::io::Error::other(other.to_string())),
    }
}

/// Whether a run record's manifest is `manifest`: the same path as written, the same file, or
/// (when the recorded path cannot be resolved from here) the same file name.
pub fn same_manifest(recorded: &str, manifest: &Path) -> bool {
    let recorded = Path::new(recorded);
    if recorded == manifest {
        return true;
    }
    match (recorded.canonicalize(), manifest.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), _) => recorded.file_name().is_some() && recorded.file_name() == manifest.file_name(),
        (Ok(_), Err(_)) => false,
    }
}

/// `rel` under `root`, if it is a relative path without `..` whose real location (symbolic
/// links resolved) is inside the directory, and it is a file, not a link.
fn inside(root: &Path, canonical_root: &Path, rel: &str) -> Option<PathBuf> {
    let rel_path = Path::new(rel);
    let plain = rel_path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if rel.is_empty() || !plain {
        return None;
    }
    let path = root.join(rel_path);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    path.canonicalize().ok().filter(|real| real.starts_with(canonical_root)).map(|_| path)
}

/// The recorded image, if it is still the file the journal recorded.
fn recorded_file(root: &Path, canonical_root: &Path, output: &OutputRecord) -> Option<PathBuf> {
    let path = inside(root, canonical_root, &output.path)?;
    let meta = std::fs::metadata(&path).ok()?;
    if meta.len() == output.bytes && super::store::mtime_ns(&meta) == output.mtime_ns {
        return Some(path);
    }
    let (algorithm, expected) = output.content_hash();
    digest::file_matches(&path, algorithm, expected).then_some(path)
}

/// The sidecar of a recorded image, if it still names the record's fingerprint.
fn own_sidecar(root: &Path, canonical_root: &Path, rel: &str, fp: &str) -> Option<PathBuf> {
    let path = inside(root, canonical_root, rel)?;
    SidecarRead::read(&path).filter(|s| s.fingerprint == fp || fp.is_empty()).map(|_| path)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::same_manifest;

    #[test]
    fn a_manifest_is_known_by_path_file_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.yaml");
        std::fs::write(&m, "version: 1").unwrap();
        assert!(same_manifest(&m.display().to_string(), &m));
        assert!(same_manifest(&dir.path().join("./m.yaml").display().to_string(), &m));
        assert!(same_manifest("somewhere/else/m.yaml", &m), "moved: the name decides");
        let other = dir.path().join("other.yaml");
        std::fs::write(&other, "version: 1").unwrap();
        assert!(!same_manifest(&other.display().to_string(), &m));
        assert!(!same_manifest("gone/other.yaml", Path::new(&m)));
    }
}
