//! `run --reroll-rejected` (and `plan --reroll-rejected`): exactly the tasks whose current image
//! is marked rejected are requested again, as new variants of the same task.
//!
//! Nothing about the task changes — not its fingerprint, not its dependents' — so nothing else
//! runs: a task that was done stays done, and a re-roll is a plain request (reserved against the
//! budget, guarded like any other). The image it replaces is moved aside, not overwritten, when
//! a re-roll is requested ([`move_aside`]), and stays visible as an earlier version. Its mark
//! stays with it: the new image is pending review.

use std::path::Path;

use super::log::Verdict;
use super::marks::Marks;
use crate::checkpoint::records::{OutputRecord, SupersededRecord, TaskRecord, now};
use crate::checkpoint::resume::{Decision, JournalState, Reason};
use crate::checkpoint::superseded::move_pair;
use crate::fsutil::FsError;

/// Turns the done tasks whose image is rejected into re-rolls; returns them (task index, id of
/// the journal record of the rejected image).
pub fn reroll_rejected(decisions: &mut [Decision], state: &JournalState, marks: &Marks) -> Vec<(usize, String)> {
    let mut rerolled = Vec::new();
    // Images a re-roll moved aside before a run stopped short of their new ones.
    let moved: std::collections::HashSet<&str> = state
        .superseded
        .iter()
        .filter(|s| s.reason == "rerun")
        .flat_map(|s| s.from.iter().map(String::as_str))
        .collect();
    for (i, decision) in decisions.iter_mut().enumerate() {
        if let Decision::Run(Reason::OutputMissing(path)) = decision
            && moved.contains(path.as_str())
        {
            *decision = Decision::Run(Reason::Reroll);
            continue;
        }
        let Decision::Done { record, .. } = decision else { continue };
        let image = state.latest.get(record.as_str()).and_then(|r| r.outputs.first()).map(|o| o.content_hash().1);
        if marks.verdict(image) == Some(Verdict::Rejected) {
            rerolled.push((i, record.clone()));
            *decision = Decision::Run(Reason::Reroll);
        }
    }
    rerolled
}

/// Moves the rejected images of `record` (and their sidecars) out of the way of the re-roll,
/// durably (rename, both directories synced), to `.nanobatch/superseded/<fingerprint>/<path>`
/// (`name~2.png`… when an earlier re-roll is there): the record to journal, or `None` when no
/// image is there any more.
pub fn move_aside(root: &Path, record: &TaskRecord) -> Result<Option<SupersededRecord>, FsError> {
    let (mut outputs, mut from) = (Vec::new(), Vec::new());
    for output in &record.outputs {
        if !root.join(&output.path).is_file() {
            continue;
        }
        let (path, sidecar) = move_pair(root, &record.fp, &output.path, &output.sidecar)?;
        outputs.push(OutputRecord { path, sidecar, ..output.clone() });
        from.push(output.path.clone());
    }
    Ok((!outputs.is_empty()).then(|| SupersededRecord {
        id: record.id.clone(),
        fp: record.fp.clone(),
        outputs,
        from,
        reason: "rerun".to_owned(),
        at: now(),
    }))
}
