//! Finished outputs the journal does not know are adopted, not paid for again.
//!
//! An image and its sidecar are renamed into place before the dispatcher journals the task
//! (invariant 5). A run killed in between, or whose journal write failed (a full disk), leaves
//! a complete, paid image that no record names; a deleted journal leaves every image so. A
//! task without a journaled success at its output name, whose output name holds an image that
//! its sidecar vouches for — the sidecar names the task's fingerprint and the image's content
//! hash, and the image has that hash — succeeded. It gets a task record made from the sidecar
//! (attempt, usage, cost, tier), to be journaled, instead of a new request. The request the
//! journal had as possibly billed (its `sent` record) is then settled at the sidecar's cost.
//!
//! This runs before [`super::resume::decide`], which then finds the success like any other: so
//! a task whose upstream runs again still runs again (its adopted image is superseded, kept).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;

use super::RunDir;
use super::records::{GroundingRecord, OutputRecord, Record, TaskRecord, TaskStatus, now};
use super::resume::{JournalState, strip_extension};
use crate::digest::{self, Algorithm};
use crate::media::ImageKind;
use crate::plan::{Plan, Task};
use crate::report::sidecar::SidecarRead;

/// Adopts the finished outputs of `plan` under `root` that `state` does not know: applies
/// their task records to `state` and returns them, to be journaled.
pub fn adopt(plan: &Plan, state: &mut JournalState, root: &Path) -> Vec<TaskRecord> {
    let adopted = finished_outputs(plan, state, root);
    for record in &adopted {
        state.apply(&Record::task(record.clone()));
    }
    adopted
}

/// The task records of the finished outputs of `plan` under `root` that `state` does not know.
/// Each output folder is listed once; only an image whose sidecar names its task's fingerprint
/// is read (to check its hash).
pub fn finished_outputs(plan: &Plan, state: &JournalState, root: &Path) -> Vec<TaskRecord> {
    let needs_turn = plan.has_conversation_successor();
    let mut listings: HashMap<&str, Option<HashSet<OsString>>> = HashMap::new();
    let mut adopted = Vec::new();
    for (i, task) in plan.tasks.iter().enumerate() {
        let fp = task.fingerprint.to_hex();
        if journaled_here(state, task, &fp) {
            continue;
        }
        let (folder, name) = task.output.rsplit_once('/').unwrap_or(("", &task.output));
        let names = listings.entry(folder).or_insert_with(|| list(&root.join(folder)));
        if !names.as_ref().is_some_and(|n| n.contains(&OsString::from(format!("{name}.json")))) {
            continue;
        }
        adopted.extend(adoptable(root, task, &fp, needs_turn[i]));
    }
    adopted
}

/// The journal has a success of this fingerprint at this output name (done, or its output
/// missing or modified: for `decide` to say), or a record of this task that names the image
/// already (a `--strict` failure keeps its image): nothing to adopt.
fn journaled_here(state: &JournalState, task: &Task, fp: &str) -> bool {
    let at_this_name = |r: &TaskRecord| r.outputs.iter().any(|o| strip_extension(&o.path) == &*task.output);
    state.success_for(&task.id, fp).is_some_and(at_this_name)
        || state.latest.get(&*task.id).is_some_and(|r| r.fp == fp && at_this_name(r))
}

/// The names in `dir`, or `None` when it cannot be listed (not there yet).
fn list(dir: &Path) -> Option<HashSet<OsString>> {
    Some(std::fs::read_dir(dir).ok()?.flatten().map(|e| e.file_name()).collect())
}

/// The record of the finished output of `task` at its name, if its sidecar vouches for it.
fn adoptable(root: &Path, task: &Task, fp: &str, needs_turn: bool) -> Option<TaskRecord> {
    let sidecar_rel = format!("{}.json", task.output);
    let sidecar = SidecarRead::read(&regular_file(root, &sidecar_rel)?)?;
    if sidecar.fingerprint != fp {
        return None;
    }
    let kind = ImageKind::from_mime(&sidecar.mime_type)?;
    let image_rel = format!("{}.{}", task.output, kind.extension());
    let image = regular_file(root, &image_rel)?;
    let (algorithm, expected) = sidecar.content_hash();
    if !digest::file_matches(&image, algorithm, expected) {
        return None;
    }
    // A later step replays this one's turn: without it the step cannot continue.
    let turn = RunDir::turn_rel(fp);
    if needs_turn && regular_file(root, &turn).is_none() {
        return None;
    }
    let meta = std::fs::metadata(&image).ok()?;
    let (blake3, sha256) = match algorithm {
        Algorithm::Blake3 => (expected.to_owned(), String::new()),
        Algorithm::Sha256 => (String::new(), expected.to_owned()),
    };
    let output = OutputRecord {
        path: image_rel,
        sidecar: sidecar_rel,
        blake3,
        sha256,
        bytes: meta.len(),
        mtime_ns: super::store::mtime_ns(&meta),
        mime: kind.mime().to_owned(),
        width: sidecar.pixels.0,
        height: sidecar.pixels.1,
    };
    Some(TaskRecord {
        id: task.id.to_string(),
        fp: fp.to_owned(),
        parts: task.parts.to_hex(),
        status: TaskStatus::Succeeded,
        // The attempt that made it: its `sent` record is settled by this one.
        attempts: sidecar.attempt,
        outputs: vec![output],
        turn: needs_turn.then_some(turn),
        usage: sidecar.usage,
        cost_usd: sidecar.cost_usd,
        tier: sidecar.tier,
        finish_reason: sidecar.finish_reason,
        error: None,
        model_version: sidecar.model_version,
        response_id: sidecar.response_id,
        text: (!sidecar.text.is_empty()).then_some(sidecar.text),
        size_mismatch: (sidecar.pixels != task.pixels).then_some(sidecar.pixels),
        grounding: sidecar
            .grounding
            .into_iter()
            .map(|g| GroundingRecord { uri: g.uri, title: g.title, image_uri: g.image_uri })
            .collect(),
        usage_reported: None,
        latency_ms: 0,
        at: now(),
    })
}

/// `root/rel` if it is a regular file (not a symbolic link).
fn regular_file(root: &Path, rel: &str) -> Option<std::path::PathBuf> {
    let path = root.join(rel);
    std::fs::symlink_metadata(&path).ok()?.is_file().then_some(path)
}
