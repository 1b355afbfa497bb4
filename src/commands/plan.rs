//! `nanobatch plan MANIFEST` (and `run --dry-run`): the tasks, what is already done and why the
//! rest must run, and the exact cost, interactive and batch. No network.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{
    CommandError, CommandResult, earlier_default_run, earlier_run_error, load_and_plan, output_dir, resume_command,
    warn_with_hints,
};
use crate::catalog::{Tier, Usd};
use crate::checkpoint::RunDir;
use crate::checkpoint::journal;
use crate::checkpoint::resume::{Decision, DiskCheck, JournalState, PlannedTask, Reason, decide};
use crate::cli::{Mode, PlanArgs};
use crate::exit_code;
use crate::manifest::Manifest;
use crate::plan::estimate::{CostBuilder, CostSummary};
use crate::plan::{Plan, TaskView};
use crate::ui::{Printer, counted, thousands};

pub fn run(printer: &Printer, args: &PlanArgs) -> CommandResult {
    let (manifest, plan) = load_and_plan(printer, &args.manifest)?;
    let dir = output_dir(&manifest, args.output.as_deref());
    if let Some(old) = earlier_default_run(&manifest, args.output.as_deref()) {
        warn_with_hints(printer, &earlier_run_error(&manifest, &old, &resume_command(&args.manifest, &old)));
    }
    super::check_output_dirs(&plan, &dir)?;
    let mut assessed = assess(&manifest, &plan, &dir, args.retry_failed)?;
    if args.reroll_rejected {
        reroll_rejected(printer, &dir, &mut assessed.decisions, &assessed.state)?;
    }
    for note in &assessed.notes {
        printer.note(note);
    }
    print_plan(printer, &manifest, &plan, &dir, &assessed, args.json, args.tasks, args.mode);
    Ok(exit_code::OK)
}

/// `--reroll-rejected`: the done tasks whose image is rejected must run again; says how many.
/// Returns them (task index, journal record id).
pub fn reroll_rejected(
    printer: &Printer,
    dir: &Path,
    decisions: &mut [Decision],
    state: &JournalState,
) -> Result<Vec<(usize, String)>, CommandError> {
    let rerolled =
        crate::review::reroll_rejected_in(dir, decisions, state).map_err(|e| CommandError::fatal(e.to_string()))?;
    let n = rerolled.len();
    if n == 0 {
        printer.note(&format!("no image in {} is marked rejected: nothing to re-roll", dir.display()));
    } else {
        printer.note(&format!(
            "re-rolling {}: new requests, the rejected images kept as earlier versions",
            counted(n as u64, "rejected image")
        ));
    }
    Ok(rerolled)
}

/// The plan against the run directory: decisions and the journal's totals.
pub struct Assessed {
    pub decisions: Vec<Decision>,
    pub state: JournalState,
    pub notes: Vec<String>,
}

pub fn assess(manifest: &Manifest, plan: &Plan, dir: &Path, retry_failed: bool) -> Result<Assessed, CommandError> {
    let run_dir = RunDir::new(dir);
    let contents = journal::read(&run_dir.journal()).map_err(|e| CommandError::fatal(e.to_string()))?;
    let (mut state, mut notes) = match contents {
        Some(c) => (JournalState::from_owned_records(c.records), c.notes),
        None => (JournalState::default(), Vec::new()),
    };
    let adopted = crate::checkpoint::adopt::adopt(plan, &mut state, dir);
    if !adopted.is_empty() {
        notes.push(super::run::adopted_note(adopted.len(), "`run` records them without a request"));
    }
    let decisions = decide_all(manifest, plan, &state, dir, retry_failed);
    Ok(Assessed { decisions, state, notes })
}

pub fn decide_all(
    _manifest: &Manifest,
    plan: &Plan,
    state: &JournalState,
    dir: &Path,
    retry_failed: bool,
) -> Vec<Decision> {
    if state.latest.is_empty() && state.open_attempts.is_empty() {
        // A fresh output directory: everything is new (no need to look anything up).
        return vec![Decision::Run(Reason::New); plan.tasks.len()];
    }
    let fps: Vec<String> = plan.tasks.iter().map(|t| t.fingerprint.to_hex()).collect();
    let deps: Vec<Vec<u32>> = plan.tasks.iter().map(|t| t.deps().collect()).collect();
    let planned: Vec<PlannedTask<'_>> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| PlannedTask { id: &t.id, fp: &fps[i], parts: t.parts, output: &t.output, deps: &deps[i] })
        .collect();
    decide(&planned, state, &DiskCheck { root: dir }, retry_failed)
}

pub fn cost_summary(manifest: &Manifest, plan: &Plan, decisions: &[Decision]) -> CostSummary {
    let mut builder = CostBuilder::default();
    for (task, decision) in plan.tasks.iter().zip(decisions) {
        let view = TaskView::new(manifest, task);
        let done = !decision.must_run();
        builder.add(task.job as usize, &view.job.name, view.model, &task.size_label(), &task.estimate, done);
    }
    builder.finish(manifest.retry.attempts)
}

#[derive(Serialize)]
struct PlanJson<'a> {
    manifest: String,
    name: &'a str,
    output_dir: String,
    tasks: u64,
    images: u64,
    done: u64,
    failed: u64,
    to_run: u64,
    reasons: BTreeMap<&'static str, u64>,
    cost: &'a CostSummary,
    spent_usd: Usd,
    possibly_billed_usd: Usd,
    /// Tasks with no task depending on them: what batch mode would send to the Batch API.
    batchable_tasks: u64,
    assumptions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    run: Vec<TaskLine<'a>>,
}

#[derive(Serialize)]
struct TaskLine<'a> {
    id: &'a str,
    output: &'a str,
    reason: String,
    cost_usd: Usd,
}

#[allow(clippy::too_many_arguments)]
pub fn print_plan(
    printer: &Printer,
    manifest: &Manifest,
    plan: &Plan,
    dir: &Path,
    assessed: &Assessed,
    json: bool,
    list_tasks: bool,
    mode: Mode,
) {
    let summary = cost_summary(manifest, plan, &assessed.decisions);
    let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed = 0;
    for d in &assessed.decisions {
        match d {
            Decision::Run(r) => *reasons.entry(r.label()).or_default() += 1,
            Decision::Failed { .. } => failed += 1,
            Decision::Done { .. } => {}
        }
    }
    let to_run: u64 = reasons.values().sum();
    let done = plan.tasks.len() as u64 - to_run - failed;
    let dependents = plan.dependents();
    let batchable =
        assessed.decisions.iter().enumerate().filter(|(i, d)| d.must_run() && dependents[*i].is_empty()).count() as u64;
    let assumptions = assumptions(manifest);
    if json {
        let run: Vec<TaskLine<'_>> = if list_tasks {
            plan.tasks
                .iter()
                .zip(&assessed.decisions)
                .filter_map(|(t, d)| match d {
                    Decision::Run(r) => Some(TaskLine {
                        id: &t.id,
                        output: &t.output,
                        reason: r.describe(),
                        cost_usd: TaskView::new(manifest, t).model.cost(&t.estimate, Tier::Interactive),
                    }),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let out = PlanJson {
            manifest: manifest.file.display().to_string(),
            name: &manifest.name,
            output_dir: dir.display().to_string(),
            tasks: plan.tasks.len() as u64,
            images: plan.tasks.len() as u64,
            done,
            failed,
            to_run,
            reasons,
            cost: &summary,
            spent_usd: assessed.state.spent,
            possibly_billed_usd: assessed.state.possibly_billed,
            batchable_tasks: batchable,
            assumptions,
            run,
        };
        printer.data(&serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    let mut text = String::new();
    text.push_str(&format!("plan for {} ({})\n", printer.bold(&manifest.name), manifest.file.display()));
    text.push_str(&format!(
        "  {} · {} · {} done · {} failed · {} to run · output {}\n\n",
        counted(manifest.jobs.len() as u64, "job"),
        counted(plan.tasks.len() as u64, "task"),
        thousands(done),
        thousands(failed),
        thousands(to_run),
        dir.display()
    ));
    text.push_str(&cost_table(&summary));
    if !reasons.is_empty() {
        let why: Vec<String> = reasons.iter().map(|(k, v)| format!("{} {k}", thousands(*v))).collect();
        text.push_str(&format!("\n  to run: {}\n", why.join(" · ")));
    }
    let t = &summary.tokens;
    text.push_str(&format!(
        "  tokens (all tasks): {} input text · {} input image · {} output image · {} output text · {} thinking\n",
        thousands(t.input_text),
        thousands(t.input_image),
        thousands(t.output_image),
        thousands(t.output_text),
        thousands(t.thinking)
    ));
    if !assessed.state.spent.is_zero() || !assessed.state.possibly_billed.is_zero() {
        text.push_str(&format!(
            "  already spent in {}: {} (+ {} possibly billed)\n",
            dir.display(),
            assessed.state.spent,
            assessed.state.possibly_billed
        ));
    }
    text.push_str(&format!(
        "  worst case with retries ({} attempts per task, if every attempt were billed): {}\n",
        summary.attempts_per_task, summary.worst_case_usd
    ));
    let saving = summary.remaining_interactive_usd - summary.remaining_batch_usd;
    if mode == Mode::Interactive && batchable > 0 && !saving.is_zero() {
        text.push_str(&format!(
            "  batch mode would cost {} for what remains (save up to {saving}; results within 24 h): add --mode batch or --mode auto\n",
            summary.remaining_batch_usd
        ));
    }
    for a in &assumptions {
        text.push_str(&format!("  assumes: {a}\n"));
    }
    if list_tasks {
        text.push('\n');
        for (t, d) in plan.tasks.iter().zip(&assessed.decisions) {
            if let Decision::Run(r) = d {
                text.push_str(&format!("  run {}  → {}  ({})\n", t.id, t.output, r.describe()));
            }
        }
    }
    if to_run > 0 {
        text.push_str(&format!("\n  run it: {}\n", resume_command(&manifest.file, dir)));
    }
    printer.data(&text);
}

fn cost_table(summary: &CostSummary) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "job".into(),
        "model".into(),
        "size".into(),
        "tasks".into(),
        "done".into(),
        "to run".into(),
        "interactive".into(),
        "batch".into(),
    ]];
    for l in &summary.lines {
        rows.push([
            l.job.clone(),
            l.model.clone(),
            l.size.clone(),
            thousands(l.tasks),
            thousands(l.done),
            thousands(l.tasks - l.done),
            l.remaining_interactive_usd.to_string(),
            l.remaining_batch_usd.to_string(),
        ]);
    }
    rows.push([
        "total".into(),
        String::new(),
        String::new(),
        thousands(summary.tasks),
        thousands(summary.done),
        thousands(summary.tasks - summary.done),
        summary.remaining_interactive_usd.to_string(),
        summary.remaining_batch_usd.to_string(),
    ]);
    let widths: Vec<usize> = (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str("  ");
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c >= 3 {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str("  ");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        if i == 0 || i == rows.len() - 2 {
            out.push_str("  ");
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * 7));
            out.push('\n');
        }
    }
    out
}

fn assumptions(manifest: &Manifest) -> Vec<String> {
    let mut models: Vec<&str> = manifest.jobs.iter().flat_map(|j| j.models.iter().map(String::as_str)).collect();
    models.sort_unstable();
    models.dedup();
    let mut out = vec![
        "output image tokens from the catalogue's resolution tables (exact)".to_owned(),
        "text input = ceil(bytes / 4) tokens per text part".to_owned(),
    ];
    for id in models {
        if let Some(m) = manifest.catalog.model(id) {
            out.push(format!(
                "{id}: {} tokens per input image, ~{} thinking tokens per request, {} caption tokens with TEXT output; prices of {}",
                m.input_image_tokens,
                m.thinking_estimate(m.thinking.default_level.as_deref()),
                m.estimates.text_output_tokens,
                manifest.catalog.prices_date
            ));
        }
    }
    out
}
