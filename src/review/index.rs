//! A run directory as the review sees it: the plan snapshot, every task's outcome from the
//! journal (as `status` and `report` read them), and the marks. Works from the directory alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::log::{LogError, Verdict};
use super::marks::{Mark, Marks};
use crate::checkpoint::RunDir;
use crate::checkpoint::journal::{self, JournalError};
use crate::checkpoint::records::{Record, SupersededRecord, TaskStatus};
use crate::checkpoint::snapshot::{PlanSnapshot, SnapshotTask};
use crate::report::build::{Collector, Finished, TaskOutcome};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{} holds no nanobatch run (no .nanobatch/plan.jsonl)", .0.display())]
    NoRun(PathBuf),
    #[error("{0}")]
    Snapshot(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A task's current image: the first output of its last success.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Relative to the run directory, `/`-separated.
    pub path: String,
    /// Content hash (hex): what marks are about.
    pub hash: String,
}

/// An earlier image of a task: moved aside (`.nanobatch/superseded/`) when a new one landed.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub path: String,
    pub hash: String,
    /// `rerun` (a re-roll or a retry), `changed` (the task's inputs changed), …
    pub reason: String,
    /// When it was moved aside.
    pub at: String,
}

pub struct RunIndex {
    pub root: PathBuf,
    pub snapshot: PlanSnapshot,
    pub outcomes: Vec<TaskOutcome>,
    pub marks: Marks,
    /// Damaged or torn lines in the journal or the review log.
    pub notes: Vec<String>,
    images: Vec<Option<Image>>,
    /// Earlier images of each task (still on disk), oldest first.
    versions: Vec<Vec<Version>>,
    /// Current image hash → task.
    by_hash: HashMap<String, usize>,
    /// Every image the app may serve (current and earlier): hash → path.
    paths: HashMap<String, String>,
}

impl RunIndex {
    pub fn load(dir: &Path) -> Result<RunIndex, IndexError> {
        let run_dir = RunDir::new(dir);
        if !run_dir.plan().exists() {
            return Err(IndexError::NoRun(dir.to_path_buf()));
        }
        let snapshot = PlanSnapshot::read(&run_dir.plan()).map_err(IndexError::Snapshot)?;
        let mut collector = Collector::new(&snapshot);
        let mut superseded = Vec::new();
        let mut notes = journal::visit(&run_dir.journal(), |record| {
            collector.add(&record);
            if let Record::Superseded(s) = record {
                superseded.push(s);
            }
        })?
        .unwrap_or_default();
        let outcomes = collector.finish().tasks;
        let read = super::read_marks(&run_dir)?;
        notes.extend(read.notes);
        let images: Vec<Option<Image>> = outcomes.iter().map(current_image).collect();
        let by_hash = images.iter().enumerate().filter_map(|(i, img)| Some((img.as_ref()?.hash.clone(), i))).collect();
        let versions = versions_of(dir, &snapshot, &superseded);
        let paths = images
            .iter()
            .flatten()
            .map(|img| (img.hash.clone(), img.path.clone()))
            .chain(versions.iter().flatten().map(|v| (v.hash.clone(), v.path.clone())))
            .collect();
        Ok(RunIndex {
            root: dir.to_path_buf(),
            snapshot,
            outcomes,
            marks: read.marks,
            notes,
            images,
            versions,
            by_hash,
            paths,
        })
    }

    /// Task `i`'s earlier images, oldest first.
    pub fn versions(&self, i: usize) -> &[Version] {
        self.versions.get(i).map_or(&[], Vec::as_slice)
    }

    /// Where the image with this content hash is (current or earlier), relative to the root.
    pub fn image_path(&self, hash: &str) -> Option<&str> {
        self.paths.get(hash).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.snapshot.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot.tasks.is_empty()
    }

    pub fn task(&self, i: usize) -> &SnapshotTask {
        &self.snapshot.tasks[i]
    }

    pub fn image(&self, i: usize) -> Option<&Image> {
        self.images.get(i)?.as_ref()
    }

    pub fn finished(&self, i: usize) -> Option<&Finished> {
        self.outcomes.get(i)?.last.as_ref()
    }

    /// The mark on task `i`'s current image (`None`: pending review, or no image).
    pub fn mark(&self, i: usize) -> Option<&Mark> {
        self.marks.get(&self.image(i)?.hash)
    }

    pub fn verdict(&self, i: usize) -> Option<Verdict> {
        self.mark(i).map(|m| m.mark)
    }

    /// The task whose current image has this content hash.
    pub fn task_of_image(&self, hash: &str) -> Option<usize> {
        self.by_hash.get(hash).copied()
    }

    /// Tasks whose current image carries `verdict`, in plan order.
    pub fn with_verdict(&self, verdict: Verdict) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.verdict(i) == Some(verdict)).collect()
    }

    /// Finds the tasks named on a command line: a task id, or an output path (relative to the
    /// run directory, or as a path to the file from here). Every name that matches nothing or
    /// has no image to mark is reported, all at once.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<usize>, Vec<String>> {
        let by_id: HashMap<&str, usize> =
            self.snapshot.tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let mut by_path: HashMap<&str, usize> = HashMap::new();
        for (i, outcome) in self.outcomes.iter().enumerate() {
            for path in outcome.last.iter().flat_map(|r| &r.outputs) {
                by_path.insert(path.as_str(), i);
                by_path.insert(crate::checkpoint::resume::strip_extension(path), i);
            }
        }
        let canonical_root = self.root.canonicalize().ok();
        let (mut found, mut problems) = (Vec::new(), Vec::new());
        for name in names {
            let relative = relative_to_root(name, canonical_root.as_deref());
            let Some(i) = by_id.get(name.as_str()).or_else(|| by_path.get(relative.as_str())).copied() else {
                problems.push(unknown_name(name, by_id.keys().copied()));
                continue;
            };
            if self.image(i).is_none() {
                let status = self.outcomes[i].status.replace('_', " ");
                problems.push(format!(
                    "`{}` has no image to review (it is {status}); only images can be marked (failed tasks run again with `run --retry-failed`)",
                    self.task(i).id
                ));
                continue;
            }
            if !found.contains(&i) {
                found.push(i);
            }
        }
        if problems.is_empty() { Ok(found) } else { Err(problems) }
    }
}

/// The superseded images still on disk, by the task they were made for (by id and
/// fingerprint, else by fingerprint, as the report matches records).
fn versions_of(root: &Path, snapshot: &PlanSnapshot, superseded: &[SupersededRecord]) -> Vec<Vec<Version>> {
    let by_id: HashMap<(&str, &str), usize> =
        snapshot.tasks.iter().enumerate().map(|(i, t)| ((t.id.as_str(), t.fp.as_str()), i)).collect();
    let by_fp: HashMap<&str, usize> = snapshot.tasks.iter().enumerate().map(|(i, t)| (t.fp.as_str(), i)).collect();
    let by_name: HashMap<&str, usize> = snapshot.tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
    let mut out = vec![Vec::new(); snapshot.tasks.len()];
    for record in superseded {
        let task = by_id
            .get(&(record.id.as_str(), record.fp.as_str()))
            .or_else(|| by_fp.get(record.fp.as_str()))
            .or_else(|| by_name.get(record.id.as_str()));
        let Some(&task) = task else { continue };
        for output in record.outputs.iter().filter(|o| root.join(&o.path).is_file()) {
            out[task].push(Version {
                path: output.path.clone(),
                hash: output.content_hash().1.to_owned(),
                reason: record.reason.clone(),
                at: record.at.clone(),
            });
        }
    }
    out
}

/// A succeeded task's first output, with its hash.
fn current_image(outcome: &TaskOutcome) -> Option<Image> {
    let last = outcome.last.as_ref().filter(|r| r.status == TaskStatus::Succeeded)?;
    Some(Image { path: last.outputs.first()?.clone(), hash: last.image_hex()? })
}

/// `out/packshot/a.png` (a path from here) or `./packshot/a.png` → `packshot/a.png`.
fn relative_to_root(name: &str, canonical_root: Option<&Path>) -> String {
    if let (Some(root), Ok(path)) = (canonical_root, Path::new(name).canonicalize())
        && let Ok(rel) = path.strip_prefix(root)
    {
        return rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
    }
    name.trim_start_matches("./").replace('\\', "/")
}

fn unknown_name<'a>(name: &str, ids: impl Iterator<Item = &'a str>) -> String {
    let best = ids
        .map(|id| (strsim::jaro_winkler(name, id), id))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, id)) => format!("no task or output named `{name}`; did you mean `{id}`?"),
        None => format!(
            "no task or output named `{name}`; give a task id (see report.json) or an image's path in the run directory"
        ),
    }
}
