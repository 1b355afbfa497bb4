//! `nanobatch status DIR`: where a run stands, from its journal and plan snapshot alone.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CommandError, CommandResult, shell_quote};
use crate::catalog::Usd;
use crate::checkpoint::RunDir;
use crate::checkpoint::journal;
use crate::checkpoint::resume::JournalState;
use crate::checkpoint::snapshot::PlanSnapshot;
use crate::checkpoint::superseded;
use crate::cli::StatusArgs;
use crate::exit_code;
use crate::report::build::{Removed, collect, review_counts};
use crate::report::schema::ReviewCounts;
use crate::ui::{Printer, counted, thousands};

#[derive(Serialize)]
struct StatusJson {
    name: String,
    manifest: String,
    tasks: u64,
    succeeded: u64,
    failed: u64,
    no_image: u64,
    skipped: u64,
    pending: u64,
    failed_by_class: BTreeMap<String, u64>,
    possibly_billed_attempts: u64,
    spent_usd: Usd,
    possibly_billed_usd: Usd,
    remaining_estimate_usd: Usd,
    last_run: Option<String>,
    open_batches: Vec<String>,
    /// Review marks, once anything was marked.
    #[serde(skip_serializing_if = "Option::is_none")]
    review: Option<ReviewCounts>,
    next: Option<String>,
    /// Tasks the manifest no longer has: their spend is in `spent_usd`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    no_longer_in_manifest: Vec<RemovedJson>,
    /// Earlier images kept under `.nanobatch/superseded/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    superseded: Vec<SupersededJson>,
}

#[derive(Serialize)]
struct RemovedJson {
    id: String,
    status: &'static str,
    earlier_version: bool,
    spent_usd: Usd,
    possibly_billed_usd: Usd,
    /// Its images on disk.
    files: Vec<String>,
}

#[derive(Serialize)]
struct SupersededJson {
    id: String,
    fp: String,
    path: String,
    original: String,
    reason: String,
    bytes: u64,
}

pub fn run(printer: &Printer, args: &StatusArgs) -> CommandResult {
    let run_dir = RunDir::new(&args.dir);
    if !run_dir.exists() {
        return Err(CommandError::invalid(format!("{} holds no nanobatch run", args.dir.display())));
    }
    let snapshot = PlanSnapshot::read(&run_dir.plan()).map_err(CommandError::fatal)?;
    let contents =
        journal::read(&run_dir.journal()).map_err(|e| CommandError::fatal(e.to_string()))?.unwrap_or_default();
    let state = JournalState::from_records(&contents.records);
    let collected = collect(&snapshot, &contents.records);
    let outcomes = collected.tasks;
    let removed: Vec<RemovedJson> = collected.removed.iter().map(|r| removed_json(&args.dir, r)).collect();
    let kept = superseded::kept(&args.dir, &state.superseded);
    let kept_bytes = superseded::kept_bytes(&args.dir, &kept);
    let marks = crate::review::read_marks(&run_dir).map_err(|e| CommandError::fatal(e.to_string()))?;
    let review = (!marks.marks.is_empty()).then(|| review_counts(&outcomes, &marks.marks));
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    let mut remaining = Usd::ZERO;
    for (task, o) in snapshot.tasks.iter().zip(&outcomes) {
        *counts.entry(o.status).or_default() += 1;
        if let Some((class, _)) = o.last.as_ref().and_then(|r| r.error.as_ref()) {
            *by_class.entry(class.clone()).or_default() += 1;
        }
        if o.status == "pending" {
            remaining += task.est_usd;
        }
    }
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    let pending = get("pending");
    let failed = get("failed") + get("no_image") + get("skipped");
    let next = if pending > 0 {
        Some(format!(
            "nanobatch run {} -o {}",
            shell_quote(&snapshot.header.manifest),
            shell_quote(&args.dir.display().to_string())
        ))
    } else if failed > 0 {
        Some(format!(
            "nanobatch run {} -o {} --retry-failed",
            shell_quote(&snapshot.header.manifest),
            shell_quote(&args.dir.display().to_string())
        ))
    } else {
        None
    };
    let last_run = state.last_end.as_ref().map(|e| format!("{} at {}", e.status, crate::ui::human_time(&e.at)));
    let open_batches: Vec<String> =
        state.open_batches().iter().map(|b| format!("{} ({} tasks, {})", b.name, b.ids.len(), b.model)).collect();
    if args.json {
        let out = StatusJson {
            name: snapshot.header.name.clone(),
            manifest: snapshot.header.manifest.clone(),
            tasks: snapshot.tasks.len() as u64,
            succeeded: get("succeeded"),
            failed: get("failed"),
            no_image: get("no_image"),
            skipped: get("skipped"),
            pending,
            failed_by_class: by_class,
            possibly_billed_attempts: state.possibly_billed_attempts,
            spent_usd: state.spent,
            possibly_billed_usd: state.possibly_billed,
            remaining_estimate_usd: remaining,
            last_run,
            open_batches,
            review,
            next,
            no_longer_in_manifest: removed,
            superseded: kept.iter().flat_map(|r| superseded_json(r)).collect(),
        };
        printer.data(&serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(exit_code::OK);
    }
    let mut text = format!("{} ({})\n", printer.bold(&snapshot.header.name), args.dir.display());
    text.push_str(&format!(
        "  {} tasks: {} done · {} failed · {} without image · {} skipped · {} pending\n",
        thousands(snapshot.tasks.len() as u64),
        thousands(get("succeeded")),
        thousands(get("failed")),
        thousands(get("no_image")),
        thousands(get("skipped")),
        thousands(pending)
    ));
    if !by_class.is_empty() {
        let classes: Vec<String> = by_class.iter().map(|(k, v)| format!("{v} {k}")).collect();
        text.push_str(&format!("  failures by class: {}\n", classes.join(" · ")));
    }
    text.push_str(&format!(
        "  spent {} · possibly billed {} ({} attempts with unknown outcome) · still to run ≈ {}\n",
        state.spent, state.possibly_billed, state.possibly_billed_attempts, remaining
    ));
    if let Some(l) = &last_run {
        text.push_str(&format!("  last run: {l}\n"));
    }
    if let Some(r) = &review {
        text.push_str(&format!(
            "  review: {} approved · {} rejected · {} to review\n",
            thousands(r.approved),
            thousands(r.rejected),
            thousands(r.pending)
        ));
        if r.rejected > 0 {
            text.push_str(&format!(
                "  re-roll the rejected: nanobatch run {} -o {} --reroll-rejected\n",
                shell_quote(&snapshot.header.manifest),
                shell_quote(&args.dir.display().to_string())
            ));
        }
    }
    for b in &open_batches {
        text.push_str(&format!("  server-side batch job running: {b}\n"));
    }
    text.push_str(&removed_text(&removed));
    if !kept.is_empty() {
        text.push_str(&format!(
            "  superseded: {} kept in {} ({}); delete them with: nanobatch prune {}\n",
            counted(kept.len() as u64, "earlier image"),
            args.dir.join(superseded::DIR).display(),
            crate::ui::bytes(kept_bytes),
            shell_quote(&args.dir.display().to_string())
        ));
    }
    for note in &contents.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    if let Some(n) = &next {
        text.push_str(&format!("  next: {n}\n"));
    }
    printer.data(&text);
    Ok(exit_code::OK)
}

fn removed_json(dir: &std::path::Path, r: &Removed) -> RemovedJson {
    let files = r.outcome.last.iter().flat_map(|l| &l.outputs).filter(|p| dir.join(p).is_file()).cloned().collect();
    RemovedJson {
        id: r.id.clone(),
        status: r.outcome.status,
        earlier_version: r.earlier_version,
        spent_usd: r.outcome.actual_cost(),
        possibly_billed_usd: r.outcome.possibly_billed(),
        files,
    }
}

/// The tasks no longer in the manifest: what they cost (in `spent` above) and their files
/// (those kept as earlier images are listed with them, below).
fn removed_text(removed: &[RemovedJson]) -> String {
    if removed.is_empty() {
        return String::new();
    }
    let spent: Usd = removed.iter().map(|r| r.spent_usd).sum();
    let (kept, files): (Vec<&str>, Vec<&str>) =
        removed.iter().flat_map(|r| r.files.iter().map(String::as_str)).partition(|f| f.starts_with(superseded::DIR));
    let mut text =
        format!("  no longer in the manifest: {}, {spent} of the spend above", counted(removed.len() as u64, "task"));
    match (files.len(), kept.len()) {
        (0, 0) => text.push_str("; no files left\n"),
        (n, 0) => text.push_str(&format!("; their {} files:\n", thousands(n as u64))),
        (0, k) => text.push_str(&format!("; their {} files are earlier images (below)\n", thousands(k as u64))),
        (n, k) => text.push_str(&format!(
            "; their {} files ({} more are earlier images, below):\n",
            thousands(n as u64),
            thousands(k as u64)
        )),
    }
    const SHOWN: usize = 10;
    for f in files.iter().take(SHOWN) {
        text.push_str(&format!("    {f}\n"));
    }
    if files.len() > SHOWN {
        text.push_str(&format!(
            "    … and {} more (status --json lists them all)\n",
            thousands((files.len() - SHOWN) as u64)
        ));
    }
    text
}

fn superseded_json(r: &crate::checkpoint::records::SupersededRecord) -> Vec<SupersededJson> {
    r.outputs
        .iter()
        .enumerate()
        .map(|(k, o)| SupersededJson {
            id: r.id.clone(),
            fp: r.fp.clone(),
            path: o.path.clone(),
            original: r.from.get(k).cloned().unwrap_or_default(),
            reason: r.reason.clone(),
            bytes: o.bytes,
        })
        .collect()
}
