//! `nanobatch mark DIR --approve|--reject|--clear [--note TEXT] TASK...`: the review app's
//! operations for scripts. Every name is checked first; nothing is written unless all are good.

use super::{CommandError, CommandResult};
use crate::checkpoint::RunDir;
use crate::cli::MarkArgs;
use crate::exit_code;
use crate::review::index::{IndexError, RunIndex};
use crate::review::log::{self, MarkRecord, Verdict};
use crate::ui::{Printer, counted};

pub fn run(printer: &Printer, args: &MarkArgs) -> CommandResult {
    let index = load_index(&args.dir)?;
    for note in &index.notes {
        printer.warn(note);
    }
    let tasks = index.resolve(&args.tasks).map_err(|problems| {
        for p in &problems {
            printer.error(p);
        }
        CommandError::printed(exit_code::INVALID_INPUT)
    })?;
    let verdict = if args.approve {
        Verdict::Approved
    } else if args.reject {
        Verdict::Rejected
    } else {
        Verdict::Cleared
    };
    let records: Vec<MarkRecord> = tasks
        .iter()
        .filter_map(|&i| {
            let image = index.image(i)?;
            let note = match verdict {
                Verdict::Cleared => None,
                _ => args.note.clone().or_else(|| index.mark(i).and_then(|m| m.note.clone())),
            };
            Some(MarkRecord::new(&image.hash, &index.task(i).id, &image.path, verdict, note))
        })
        .collect();
    let path = RunDir::new(&args.dir).review_log();
    log::append(&path, &records).map_err(|e| CommandError::fatal(e.to_string()))?;
    let what = match verdict {
        Verdict::Cleared => "back to pending review".to_owned(),
        v => v.as_str().to_owned(),
    };
    printer.note(&format!("{} {what} ({})", counted(records.len() as u64, "image"), path.display()));
    refresh_reports(printer, &args.dir);
    Ok(exit_code::OK)
}

/// Rewrites the reports a run left (report.json, and report.html where there is one) so that
/// they show the marks; a report that cannot be written is a warning (the marks are saved).
pub fn refresh_reports(printer: &Printer, dir: &std::path::Path) {
    let run_dir = RunDir::new(dir);
    if !run_dir.report_json().exists() {
        return;
    }
    if let Err(e) = super::report::write_reports(printer, dir, run_dir.report_html().exists()) {
        printer.warn(&format!("the marks are saved, but the report could not be rewritten: {e}"));
    }
}

/// The run directory as the review sees it; a directory without a run is bad input.
pub fn load_index(dir: &std::path::Path) -> Result<RunIndex, CommandError> {
    RunIndex::load(dir).map_err(|e| match e {
        IndexError::NoRun(_) => CommandError::invalid(e.to_string()),
        e => CommandError::fatal(e.to_string()),
    })
}
