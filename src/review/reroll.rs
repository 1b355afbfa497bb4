//! `run --reroll-rejected` (and `plan --reroll-rejected`): exactly the tasks whose current image
//! is marked rejected are requested again, as new variants of the same task.
//!
//! Nothing about the task changes — not its fingerprint, not its dependents' — so nothing else
//! runs: a task that was done stays done, and a re-roll is a plain request (reserved against the
//! budget, guarded like any other). The image it replaces is moved aside, not overwritten, when
//! the new one lands (`checkpoint::store`), and stays visible as an earlier version. Its mark
//! stays with it: the new image is pending review.

use super::log::Verdict;
use super::marks::Marks;
use crate::checkpoint::resume::{Decision, JournalState, Reason};

/// Turns the done tasks whose image is rejected into re-rolls; returns how many.
pub fn reroll_rejected(decisions: &mut [Decision], state: &JournalState, marks: &Marks) -> usize {
    let mut rerolled = 0;
    for decision in decisions.iter_mut() {
        let Decision::Done { record, .. } = decision else { continue };
        let image = state.latest.get(record.as_str()).and_then(|r| r.outputs.first()).map(|o| o.content_hash().1);
        if marks.verdict(image) == Some(Verdict::Rejected) {
            *decision = Decision::Run(Reason::Reroll);
            rerolled += 1;
        }
    }
    rerolled
}
