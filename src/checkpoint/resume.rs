//! Resume as a pure function of (plan, journal, files on disk): which tasks are done, which
//! failed for good, and why each of the others must run.
//!
//! A task is done when a journaled success has its fingerprint and its outputs are on disk
//! unchanged. A success is found by task id or, when ids changed (an axis gained a value), by
//! fingerprint: the fingerprint, not the name, decides whether a request would be paid twice.
//! A done task whose output name changed is relocated, not requested again.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::records::{BatchSubmitted, EndRecord, OutputRecord, Record, SupersededRecord, TaskRecord, TaskStatus};
use crate::catalog::Usd;
use crate::plan::fingerprint::Parts;

/// What the journal says, folded.
#[derive(Debug, Default, Clone)]
pub struct JournalState {
    /// The last task record per id.
    pub latest: HashMap<String, TaskRecord>,
    /// Ids of succeeded records, by fingerprint.
    pub succeeded_by_fp: HashMap<String, String>,
    /// Attempt records per fingerprint (attempts made without a final outcome yet).
    pub open_attempts: HashMap<String, u32>,
    /// Billed: cost of every task record ever written, plus billed-but-lost attempts.
    pub spent: Usd,
    /// Attempts whose outcome is unknown: they may have been billed.
    pub possibly_billed: Usd,
    pub possibly_billed_attempts: u64,
    pub batches: Vec<BatchSubmitted>,
    pub finished_batches: HashMap<String, String>,
    pub runs: u32,
    pub last_end: Option<EndRecord>,
    /// Requests sent with no outcome recorded (the process died, or they are in flight): by
    /// (fingerprint, attempt number), with their estimate. Counted as possibly billed.
    pub unanswered: HashMap<(String, u32), Usd>,
    /// Batch jobs about to be created when the process stopped (maybe created, maybe not).
    pub batch_intents: HashMap<String, super::records::BatchIntent>,
    /// Paid outputs moved out of the way of new ones, in journal order (their files may have
    /// been pruned since).
    pub superseded: Vec<SupersededRecord>,
    /// `unanswered` has been counted into `possibly_billed` (the whole journal was read): an
    /// outcome applied after that (an adopted output) takes its request back out.
    settled: bool,
}

impl JournalState {
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> JournalState {
        let mut s = JournalState::default();
        for record in records {
            s.apply(record);
        }
        s.settle_unanswered();
        s
    }

    /// As [`JournalState::from_records`], taking the records (task records move, not copied:
    /// a resume of 100,000 tasks holds them once).
    pub fn from_owned_records(records: Vec<Record>) -> JournalState {
        let mut s = JournalState::default();
        for record in records {
            match record {
                Record::Task(t) => s.apply_task(*t),
                other => s.apply(&other),
            }
        }
        s.settle_unanswered();
        s
    }

    fn apply_task(&mut self, t: TaskRecord) {
        if let Some(estimate) = self.unanswered.remove(&(t.fp.clone(), t.attempts))
            && self.settled
        {
            self.possibly_billed -= estimate;
            self.possibly_billed_attempts = self.possibly_billed_attempts.saturating_sub(1);
        }
        self.spent += t.cost_usd;
        self.open_attempts.remove(&t.fp);
        if t.status == TaskStatus::Succeeded {
            self.succeeded_by_fp.insert(t.fp.clone(), t.id.clone());
        }
        self.latest.insert(t.id.clone(), t);
    }

    /// Requests sent but never answered count as possibly billed, and as attempts made.
    fn settle_unanswered(&mut self) {
        self.settled = true;
        for ((fp, _), estimate) in &self.unanswered {
            self.possibly_billed += *estimate;
            self.possibly_billed_attempts += 1;
            *self.open_attempts.entry(fp.clone()).or_default() += 1;
        }
    }

    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Run(_) => self.runs += 1,
            Record::Sent(s) => {
                self.unanswered.insert((s.fp.clone(), s.n), s.estimate_usd);
            }
            Record::Attempt(a) => {
                self.unanswered.remove(&(a.fp.clone(), a.n));
                *self.open_attempts.entry(a.fp.clone()).or_default() += 1;
                self.possibly_billed += a.possibly_billed_usd;
                if !a.possibly_billed_usd.is_zero() {
                    self.possibly_billed_attempts += 1;
                }
                self.spent += a.billed_usd;
            }
            Record::Task(t) => self.apply_task((**t).clone()),
            Record::BatchIntent(i) => {
                self.batch_intents.insert(i.display_name.clone(), i.clone());
            }
            Record::BatchSubmitted(b) => {
                self.batch_intents.remove(&b.display_name);
                self.batches.push(b.clone());
            }
            Record::BatchFinished(b) => {
                self.finished_batches.insert(b.name.clone(), b.state.clone());
            }
            Record::Superseded(s) => self.superseded.push(s.clone()),
            Record::End(e) => self.last_end = Some(e.clone()),
        }
    }

    /// Server-side batch jobs submitted and not yet finished.
    pub fn open_batches(&self) -> Vec<&BatchSubmitted> {
        self.batches.iter().filter(|b| !self.finished_batches.contains_key(&b.name)).collect()
    }

    /// The record that proves `fp` succeeded, if any.
    pub fn success_for(&self, id: &str, fp: &str) -> Option<&TaskRecord> {
        if let Some(r) = self.latest.get(id)
            && r.fp == fp
            && r.status == TaskStatus::Succeeded
        {
            return Some(r);
        }
        let other = self.succeeded_by_fp.get(fp)?;
        self.latest.get(other).filter(|r| r.fp == fp && r.status == TaskStatus::Succeeded)
    }
}

/// The state of an output file compared with its journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Ok,
    Missing,
    Modified,
}

pub trait FileCheck {
    fn check(&self, output: &OutputRecord) -> FileState;
}

/// Checks files on disk: size and modification time first (cheap), the content hash only when they
/// differ (a copy or `touch` does not force a re-run; an edit does).
pub struct DiskCheck<'a> {
    pub root: &'a Path,
}

impl FileCheck for DiskCheck<'_> {
    fn check(&self, output: &OutputRecord) -> FileState {
        let path = self.root.join(&output.path);
        let Ok(meta) = std::fs::metadata(&path) else { return FileState::Missing };
        if !meta.is_file() {
            return FileState::Missing;
        }
        if meta.len() == output.bytes && super::store::mtime_ns(&meta) == output.mtime_ns {
            return FileState::Ok;
        }
        match std::fs::read(&path) {
            Ok(bytes) if output_matches(output, &bytes) => FileState::Ok,
            Ok(_) => FileState::Modified,
            Err(_) => FileState::Missing,
        }
    }
}

fn output_matches(output: &OutputRecord, bytes: &[u8]) -> bool {
    let (algorithm, expected) = output.content_hash();
    crate::digest::matches(algorithm, bytes, expected)
}

/// Why a task must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    New,
    /// The fingerprint changed: which parts.
    Changed(Vec<&'static str>),
    OutputMissing(String),
    OutputModified(String),
    /// A task it depends on will run again.
    Upstream,
    /// Failed or without image before; `--retry-failed` asked for another try.
    RetryFailed,
    /// Attempts were made but the run stopped before an outcome.
    Interrupted,
    /// Its image was rejected in review; `--reroll-rejected` asked for a new one.
    Reroll,
}

impl Reason {
    pub fn describe(&self) -> String {
        match self {
            Reason::New => "new".into(),
            Reason::Changed(parts) => parts.join(", "),
            Reason::OutputMissing(p) => format!("output missing ({p})"),
            Reason::OutputModified(p) => format!("output modified ({p})"),
            Reason::Upstream => "upstream changed".into(),
            Reason::RetryFailed => "retrying a failed task".into(),
            Reason::Interrupted => "interrupted before an outcome".into(),
            Reason::Reroll => "re-rolling a rejected image".into(),
        }
    }

    /// A short label for grouping.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Changed(parts) if parts.len() == 1 => parts[0],
            Reason::Changed(_) => "several inputs changed",
            Reason::OutputMissing(_) => "output missing",
            Reason::OutputModified(_) => "output modified",
            Reason::Upstream => "upstream changed",
            Reason::RetryFailed => "retrying failed",
            Reason::Interrupted => "interrupted",
            Reason::Reroll => "re-roll (rejected)",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Done: the journal record (by id) proves it; `relocate` when the output name changed.
    Done {
        record: String,
        relocate: bool,
    },
    /// Failed (or no image) before; stays so without `--retry-failed`.
    Failed {
        record: String,
    },
    Run(Reason),
}

impl Decision {
    pub fn must_run(&self) -> bool {
        matches!(self, Decision::Run(_))
    }
}

/// What the resume function needs of a planned task.
pub struct PlannedTask<'a> {
    pub id: &'a str,
    pub fp: &'a str,
    pub parts: Parts,
    /// Output name without extension.
    pub output: &'a str,
    pub deps: &'a [u32],
}

/// Decides every task, in plan order (dependencies come first).
pub fn decide(
    tasks: &[PlannedTask<'_>],
    state: &JournalState,
    files: &dyn FileCheck,
    retry_failed: bool,
) -> Vec<Decision> {
    let mut out: Vec<Decision> = Vec::with_capacity(tasks.len());
    let mut checked: HashSet<String> = HashSet::new();
    for task in tasks {
        let upstream_runs = task.deps.iter().any(|d| out.get(*d as usize).is_some_and(Decision::must_run));
        let own = decide_one(task, state, files, retry_failed, &mut checked);
        let decision = match own {
            Decision::Done { .. } | Decision::Failed { .. } if upstream_runs => Decision::Run(Reason::Upstream),
            Decision::Run(Reason::New | Reason::Interrupted) if upstream_runs && state.latest.contains_key(task.id) => {
                Decision::Run(Reason::Upstream)
            }
            other => other,
        };
        out.push(decision);
    }
    out
}

fn decide_one(
    task: &PlannedTask<'_>,
    state: &JournalState,
    files: &dyn FileCheck,
    retry_failed: bool,
    checked: &mut HashSet<String>,
) -> Decision {
    if let Some(record) = state.success_for(task.id, task.fp) {
        for output in &record.outputs {
            match files.check(output) {
                FileState::Ok => {}
                FileState::Missing => return Decision::Run(Reason::OutputMissing(output.path.clone())),
                FileState::Modified => return Decision::Run(Reason::OutputModified(output.path.clone())),
            }
        }
        // Two planned tasks cannot share one success: the second must run.
        if !checked.insert(record.id.clone()) && record.id != task.id {
            return Decision::Run(Reason::New);
        }
        let stem = record.outputs.first().map(|o| strip_extension(&o.path)).unwrap_or_default();
        let relocate = !record.outputs.is_empty() && stem != task.output;
        return Decision::Done { record: record.id.clone(), relocate };
    }
    match state.latest.get(task.id) {
        Some(r) if r.fp == task.fp => {
            if retry_failed {
                Decision::Run(Reason::RetryFailed)
            } else {
                Decision::Failed { record: r.id.clone() }
            }
        }
        Some(r) => {
            let before = Parts::from_hex(&r.parts).unwrap_or_default();
            let mut changes = before.changes(&task.parts);
            if changes.is_empty() {
                changes.push("settings changed");
            }
            Decision::Run(Reason::Changed(changes))
        }
        None if state.open_attempts.contains_key(task.fp) => Decision::Run(Reason::Interrupted),
        None => Decision::Run(Reason::New),
    }
}

/// `a/b.png` → `a/b`
pub fn strip_extension(path: &str) -> &str {
    match path.rfind('.') {
        Some(dot) if !path[dot..].contains('/') => &path[..dot],
        _ => path,
    }
}

#[cfg(test)]
mod tests;
