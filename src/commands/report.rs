//! `nanobatch report DIR`: regenerate report.json and report.html from the journal (works for a
//! run in progress too: the journal is only read).

use std::path::Path;

use super::{CommandError, CommandResult};
use crate::catalog::Usd;
use crate::checkpoint::RunDir;
use crate::checkpoint::journal;
use crate::checkpoint::snapshot::PlanSnapshot;
use crate::cli::ReportArgs;
use crate::exit_code;
use crate::report::build::{self, Collector};
use crate::ui::Printer;

pub fn run(printer: &Printer, args: &ReportArgs) -> CommandResult {
    let run_dir = RunDir::new(&args.dir);
    if !run_dir.plan().exists() {
        return Err(CommandError::invalid(format!(
            "{} holds no nanobatch run (no .nanobatch/plan.jsonl)",
            args.dir.display()
        )));
    }
    let paths = write_reports(printer, &args.dir, true).map_err(CommandError::fatal)?.paths;
    if args.json {
        let text = std::fs::read_to_string(run_dir.report_json()).map_err(|e| CommandError::fatal(e.to_string()))?;
        printer.data(&text);
    }
    let shown: Vec<&String> =
        if args.html { paths.iter().filter(|p| p.ends_with(".html")).collect() } else { paths.iter().collect() };
    for p in shown {
        printer.note(&format!("wrote {p}"));
    }
    Ok(exit_code::OK)
}

/// What [`write_reports`] wrote, and the directory's totals it found.
#[derive(Debug, Clone, Default)]
pub struct ReportsWritten {
    pub paths: Vec<String>,
    /// Spent in the directory, all runs, tasks no longer in the manifest included.
    pub spent: Usd,
    /// Tasks the manifest no longer has, and what they cost (part of `spent`).
    pub removed_tasks: u64,
    pub removed_spent: Usd,
}

/// Builds the report from the plan snapshot and the journal (both read from `dir`) and writes
/// it; returns the paths and the totals.
pub fn write_reports(printer: &Printer, dir: &Path, html: bool) -> Result<ReportsWritten, String> {
    let run_dir = RunDir::new(dir);
    let snapshot = &PlanSnapshot::read(&run_dir.plan())?;
    let started = std::time::Instant::now();
    let mut collector = Collector::new(snapshot);
    let notes = journal::visit(&run_dir.journal(), |record| collector.add(&record)).map_err(|e| e.to_string())?;
    for note in notes.unwrap_or_default() {
        printer.verbose(&note);
    }
    let mut collected = collector.finish();
    // Listed while kept: `prune` may have deleted some since.
    collected.superseded.retain(|s| s.outputs.iter().any(|o| dir.join(&o.path).is_file()));
    let mut written = ReportsWritten {
        removed_tasks: collected.removed.len() as u64,
        removed_spent: collected.removed.iter().map(|r| r.outcome.actual_cost()).sum(),
        ..ReportsWritten::default()
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "report: journal read");
    let marks = crate::review::read_marks(&run_dir).map_err(|e| e.to_string())?;
    for note in &marks.notes {
        printer.warn(note);
    }
    let marks = &marks.marks;
    let output_dir = dir.display().to_string();
    let mut paths = vec![run_dir.report_json().display().to_string()];
    if html {
        // The contact sheet shows every task: the whole report is needed anyway.
        let report = build::build(snapshot, collected, &output_dir, marks);
        written.spent = report.totals.cost_usd.actual;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "report: built");
        crate::report::write_json(&report, &run_dir.report_json()).map_err(|e| e.to_string())?;
        crate::report::html::write(&report, snapshot, dir).map_err(|e| e.to_string())?;
        paths.push(run_dir.report_html().display().to_string());
    } else {
        let (head, outcomes) = build::summarize(snapshot, collected, &output_dir, marks);
        written.spent = head.totals.cost_usd.actual;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "report: summed up");
        let tasks = build::entries(snapshot, outcomes, marks);
        crate::report::write_json_streamed(&head, tasks, &run_dir.report_json()).map_err(|e| e.to_string())?;
    }
    written.paths = paths;
    Ok(written)
}
