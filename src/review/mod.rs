//! Review: people approve or reject images, and the batch acts on it.
//!
//! - [`log`]: the review log, `.nanobatch/review.jsonl` (marks are durable data);
//! - [`marks`]: the log folded into the verdict on every image;
//! - [`index`]: a run directory as the review sees it (plan snapshot + journal + marks), with
//!   the filters and search of the app and the task lookup of `nanobatch mark`;
//! - [`server`] and `assets/`: the local web app of `nanobatch review` (CSS and JS embedded);
//! - [`reroll`]: `run --reroll-rejected`, new images for exactly the rejected ones;
//! - [`export`]: `nanobatch export`, the chosen images with their sidecars and a CSV.
//!
//! A mark is about an image (its content hash), not a task name: a re-rolled task has a new
//! image and is pending review again; an output that was only moved keeps its mark.

pub mod export;
pub mod index;
pub mod log;
pub mod marks;
pub mod reroll;
pub mod server;

use crate::checkpoint::RunDir;

/// The marks of a run directory, with notes on damaged lines.
#[derive(Debug, Default)]
pub struct ReadMarks {
    pub marks: marks::Marks,
    pub notes: Vec<String>,
}

/// Reads and folds the review log of `run_dir` (none: nothing is marked).
pub fn read_marks(run_dir: &RunDir) -> Result<ReadMarks, log::LogError> {
    let contents = log::read(&run_dir.review_log())?;
    Ok(ReadMarks { marks: marks::Marks::from_records(contents.records), notes: contents.notes })
}

/// `--reroll-rejected`: re-rolls the done tasks of `dir` whose image is rejected (see
/// [`reroll`]); returns them (task index, journal record id).
pub fn reroll_rejected_in(
    dir: &std::path::Path,
    decisions: &mut [crate::checkpoint::resume::Decision],
    state: &crate::checkpoint::resume::JournalState,
) -> Result<Vec<(usize, String)>, log::LogError> {
    let marks = read_marks(&RunDir::new(dir))?;
    Ok(reroll::reroll_rejected(decisions, state, &marks.marks))
}
