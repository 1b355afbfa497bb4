//! `nanobatch run MANIFEST`: validate, plan, resume from the journal, execute, report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::plan::{assess, print_plan};
use super::{
    CommandError, CommandResult, earlier_default_run, earlier_run_error, load_and_plan, output_dir, resume_command,
    warn_with_hints,
};
use crate::api::http::{AuthMode, Endpoint, HttpApi, HttpOptions};
use crate::api::{BatchApi, ImageApi};
use crate::catalog::Tier;
use crate::checkpoint::journal::{self, JournalWriter};
use crate::checkpoint::lock::{RunLock, hostname};
use crate::checkpoint::records::{OutputRecord, Record, RunRecord, TaskRecord, now};
use crate::checkpoint::resume::{Decision, JournalState, strip_extension};
use crate::checkpoint::snapshot::PlanSnapshot;
use crate::checkpoint::store::OutputStore;
use crate::checkpoint::superseded;
use crate::checkpoint::{RunDir, adopt, fresh};
use crate::cli::{Mode, RunArgs};
use crate::exec::batch::{BatchLimits, BatchMode};
use crate::exec::cancel::Cancel;
use crate::exec::events::{EventSink, NullSink};
use crate::exec::unit::UnitContext;
use crate::exec::{BatchSetup, DEFAULT_TIMEOUT, ExecError, ExecOptions, RunOutcome, StopReason};
use crate::manifest::Manifest;
use crate::manifest::model::Rate;
use crate::mock::{MockConfig, MockServer};
use crate::plan::Plan;
use crate::redact::Secret;
use crate::report::thumbs;
use crate::review::log::{self as review_log, MarkRecord, Verdict};
use crate::ui::progress::{JsonSink, PlainSink, RunTotals, TerminalSink, finished_json, outcome_line};
use crate::ui::{Printer, Verbosity, counted, thousands};
use crate::{env_vars, exit_code, fsutil};

/// Concurrency when neither `-j` nor `limits.concurrency` says.
pub const DEFAULT_JOBS: usize = 8;

pub fn run(printer: &Printer, args: RunArgs) -> CommandResult {
    let (manifest, plan) = load_and_plan(printer, &args.manifest)?;
    let dir = output_dir(&manifest, args.output.as_deref());
    let options = exec_options(&args, &manifest)?;
    if let Some(old) = earlier_default_run(&manifest, args.output.as_deref()) {
        let error = earlier_run_error(&manifest, &old, &resume_command(&args.manifest, &old));
        if !args.dry_run {
            return Err(error);
        }
        warn_with_hints(printer, &error);
    }
    super::check_output_dirs(&plan, &dir)?;
    if args.dry_run {
        let mut assessed = assess(&manifest, &plan, &dir, args.retry_failed)?;
        if args.reroll_rejected {
            super::plan::reroll_rejected(printer, &dir, &mut assessed.decisions, &assessed.state)?;
        }
        print_plan(printer, &manifest, &plan, &dir, &assessed, args.json, false, args.mode);
        return Ok(exit_code::OK);
    }
    let runtime = super::runtime()?;
    runtime.block_on(run_manifest(printer, &args, manifest, plan, dir, options))
}

/// Flags and manifest limits → executor options.
pub fn exec_options(args: &RunArgs, manifest: &Manifest) -> Result<ExecOptions, CommandError> {
    let jobs = args.jobs.or(manifest.limits.concurrency.map(|c| c as usize)).unwrap_or(DEFAULT_JOBS);
    if jobs == 0 {
        return Err(CommandError::invalid("-j must be at least 1"));
    }
    let mut rates: BTreeMap<String, Rate> = manifest.limits.rates.clone();
    for (flag, list) in [("--rpm", &args.rpm), ("--ipm", &args.ipm)] {
        for item in list {
            let (model, n) = item.split_once('=').ok_or_else(|| {
                CommandError::invalid(format!(
                    "{flag} {item}: write MODEL=N, e.g. {flag} gemini-3.1-flash-image-preview=60"
                ))
            })?;
            let n: u32 =
                n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    CommandError::invalid(format!("{flag} {item}: N must be a positive whole number"))
                })?;
            if manifest.catalog.model(model).is_none() {
                return Err(CommandError::invalid(format!("{flag} {item}: unknown model `{model}`")));
            }
            let rate = rates.entry(model.to_owned()).or_default();
            if flag == "--rpm" {
                rate.rpm = Some(n);
            } else {
                rate.ipm = Some(n);
            }
        }
    }
    let max_cost = match args.max_cost {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            return Err(CommandError::invalid("--max-cost must be a positive number of dollars"));
        }
        Some(v) => Some(crate::catalog::Usd::from_dollars(v)),
        None => manifest.limits.max_cost,
    };
    Ok(ExecOptions {
        jobs,
        rates,
        retry: manifest.retry.clone(),
        max_cost,
        fail_fast: args.fail_fast,
        wait_for_quota: args.wait_for_quota,
        strict: args.strict,
        tier: Tier::Interactive,
    })
}

/// The endpoint to talk to, the key, and the emulator when `--mock` started one.
pub async fn connect(
    printer: &Printer,
    args: &RunArgs,
    manifest: &Manifest,
) -> Result<(HttpApi, Option<MockServer>), CommandError> {
    let mock = if args.mock {
        let config = MockConfig { catalog: manifest.catalog.clone(), ..MockConfig::default() };
        let server = MockServer::start(config, 0)
            .await
            .map_err(|e| CommandError::fatal(format!("cannot start the built-in emulator: {e}")))?;
        printer.note(&format!("using the built-in emulator at {} (no API key, nothing is billed)", server.url()));
        Some(server)
    } else {
        None
    };
    let base_url = match &mock {
        Some(server) => server.url(),
        None => args
            .base_url
            .clone()
            .or_else(|| manifest.endpoint.base_url.clone())
            .unwrap_or_else(|| "https://generativelanguage.googleapis.com".to_owned()),
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(CommandError::invalid(format!("base URL `{base_url}` must start with https:// or http://")));
    }
    let key = if mock.is_some() { Some(Secret::new("mock-key-not-secret")) } else { api_key(printer)? };
    if key.is_none() {
        return Err(CommandError::invalid("no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)").with_hint(format!(
            "to try the pipeline without a key: nanobatch run {} --mock",
            args.manifest.display()
        )));
    }
    let endpoint = Endpoint {
        base_url,
        api_version: manifest.endpoint.api_version.clone().unwrap_or_else(|| "v1beta".to_owned()),
        auth: manifest.endpoint.auth.unwrap_or(AuthMode::Header),
        key,
    };
    let options = HttpOptions {
        timeout: args.timeout.or(manifest.endpoint.timeout).unwrap_or(DEFAULT_TIMEOUT),
        ..HttpOptions::default()
    };
    let api = HttpApi::new(endpoint, options).map_err(|e| CommandError::fatal(e.to_string()))?;
    Ok((api, mock))
}

/// `GOOGLE_API_KEY` wins when both are set (as in Google's SDKs); a difference is worth a warning.
fn api_key(printer: &Printer) -> Result<Option<Secret>, CommandError> {
    let google = env_vars::get(env_vars::GOOGLE_API_KEY);
    let gemini = env_vars::get(env_vars::GEMINI_API_KEY);
    if let (Some(g), Some(m)) = (&google, &gemini)
        && g != m
    {
        printer.warn(
            "GOOGLE_API_KEY and GEMINI_API_KEY are both set and differ; using GOOGLE_API_KEY (as Google's SDKs do)",
        );
    }
    Ok(google.or(gemini).map(|k| Secret::new(k.trim())))
}

/// The state a run starts from: lock held, journal read, decisions made, renamed outputs moved.
pub struct Prepared {
    pub lock: RunLock,
    pub store: Arc<OutputStore>,
    pub state: JournalState,
    pub decisions: Vec<Decision>,
    pub journal: JournalWriter,
    /// Done tasks whose outputs were moved to new names (the journal changed).
    pub moved: usize,
    /// The journal or the plan changed before anything ran (outputs moved or found, a
    /// different plan): the reports must be written again even if nothing runs.
    pub changed: bool,
}

pub fn prepare(
    printer: &Printer,
    args: &RunArgs,
    manifest: &Manifest,
    plan: &Plan,
    dir: &Path,
    mode: &str,
) -> Result<Prepared, CommandError> {
    let run_dir = RunDir::new(dir);
    fsutil::create_dir_all(&run_dir.state()).map_err(fs_fatal)?;
    let lock = RunLock::acquire(&run_dir.state(), args.break_lock).map_err(|e| CommandError::fatal(e.to_string()))?;
    if let Some(old) = &lock.took_over {
        printer.note(&format!(
            "a previous run ({old}) ended without releasing {}; continuing from its journal",
            lock.path().display()
        ));
    }
    if args.fresh {
        start_over(printer, &run_dir, &manifest.file, args.yes)?;
    }
    let started = std::time::Instant::now();
    let contents = journal::read(&run_dir.journal()).map_err(|e| CommandError::fatal(e.to_string()))?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "journal read");
    let (mut state, notes) = match contents {
        Some(c) => (JournalState::from_owned_records(c.records), c.notes),
        None => (JournalState::default(), Vec::new()),
    };
    for note in notes {
        printer.note(&note);
    }
    let store = Arc::new(OutputStore::open(dir).map_err(fs_fatal)?);
    let removed = remove_crash_leftovers(plan, &run_dir);
    if removed > 0 {
        printer.note(&format!("removed {removed} partial files left by an interrupted run"));
    }
    // Starting over asks for new images: what is at their names is kept aside, not adopted.
    let adopted = if args.fresh { Vec::new() } else { adopt::adopt(plan, &mut state, dir) };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "journal state built, leftovers removed");
    // The snapshot is built and written on another core while the outputs are checked. It is
    // not kept: the reports read it back at the end (memory during a run does not hold it).
    let (decisions, snapshot) = std::thread::scope(|scope| {
        let snapshot = scope.spawn(|| PlanSnapshot::write_plan(manifest, plan, &run_dir.plan()));
        let decisions = super::plan::decide_all(manifest, plan, &state, dir, args.retry_failed);
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "decided (journal and files checked)");
        (decisions, snapshot.join())
    });
    let mut decisions = decisions;
    let plan_changed = match snapshot {
        Ok(written) => written.map_err(fs_fatal)?,
        Err(_) => return Err(CommandError::fatal("the plan snapshot could not be built")),
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "plan snapshot written");
    let mut journal = JournalWriter::open(&run_dir.journal()).map_err(|e| CommandError::fatal(e.to_string()))?;
    journal.append(&Record::Run(RunRecord {
        at: now(),
        pid: std::process::id(),
        host: hostname(),
        manifest: manifest.file.display().to_string(),
        manifest_sha256: manifest.hash.clone(),
        tasks: plan.tasks.len() as u64,
        mode: mode.to_owned(),
    }));
    for record in &adopted {
        journal.append(&Record::task(record.clone()));
    }
    if !adopted.is_empty() {
        printer.note(&adopted_note(adopted.len(), "recorded now, not requested again"));
    }
    let found = journal_unrecorded_superseded(printer, dir, &mut state, &mut journal);
    let moved = relocate_renamed(printer, plan, &store, &mut state, &mut decisions, &mut journal)?;
    if args.reroll_rejected {
        // After relocation: a re-rolled image lands at the task's current name.
        let mut pending_again = Vec::new();
        for (_, record) in super::plan::reroll_rejected(printer, dir, &mut decisions, &state)? {
            // The rejected image is kept, moved out of the way of the new one.
            let Some(old) = state.latest.get(&record) else { continue };
            if let Some(moved) = crate::review::reroll::move_aside(dir, old).map_err(fs_fatal)? {
                journal.append(&Record::Superseded(moved.clone()));
                state.superseded.push(moved);
            }
            if let Some(output) = old.outputs.first() {
                let image = output.content_hash().1;
                pending_again.push(MarkRecord::new(image, &old.id, &output.path, Verdict::Rerolled, None));
            }
        }
        // The move is journaled before the marks say so.
        journal.commit().map_err(|e| CommandError::fatal(format!("cannot write the journal: {e}")))?;
        review_log::append(&RunDir::new(dir).review_log(), &pending_again)
            .map_err(|e| CommandError::fatal(e.to_string()))?;
    }
    journal.commit().map_err(|e| CommandError::fatal(format!("cannot write the journal: {e}")))?;
    let changed = plan_changed || moved > 0 || found > 0 || !adopted.is_empty();
    Ok(Prepared { lock, store, state, decisions, journal, moved, changed })
}

/// What `run` and `plan` say of finished images adopted ([`adopt`]).
pub fn adopted_note(n: usize, what_now: &str) -> String {
    format!(
        "{} on disk that no journal record named {} done (a run stopped, or its journal write failed, before recording it; each sidecar names its task's fingerprint and the image's hash): {what_now}",
        counted(n as u64, "finished image"),
        if n == 1 { "is" } else { "are" }
    )
}

/// Superseded images a run moved aside but stopped before journaling: journaled now, so that
/// `status`, the report and `prune` know them.
fn journal_unrecorded_superseded(
    printer: &Printer,
    dir: &Path,
    state: &mut JournalState,
    journal: &mut JournalWriter,
) -> usize {
    let found = superseded::unrecorded(dir, &state.superseded);
    for record in &found {
        let record = Record::Superseded(record.clone());
        journal.append(&record);
        state.apply(&record);
    }
    if !found.is_empty() {
        printer.note(&format!(
            "found {} earlier images moved to {} by an interrupted run; they are kept",
            found.len(),
            dir.join(superseded::DIR).display()
        ));
    }
    found.len()
}

/// Temp files in every output directory of the plan and in the state directory: writes a
/// crash interrupted (the journal never pointed at them).
fn remove_crash_leftovers(plan: &Plan, run_dir: &RunDir) -> usize {
    let parents: std::collections::HashSet<&str> =
        plan.tasks.iter().map(|t| t.output.rsplit_once('/').map_or("", |(dir, _)| dir)).collect();
    let mut dirs: std::collections::BTreeSet<PathBuf> = parents.iter().map(|p| run_dir.root.join(p)).collect();
    dirs.insert(run_dir.root.clone());
    dirs.insert(run_dir.state());
    for sub in ["turns", "thumbs", "batches"] {
        dirs.insert(run_dir.state().join(sub));
    }
    dirs.iter().map(|d| fsutil::remove_temp_files(d)).sum()
}

/// Outputs of done tasks whose names changed in the manifest are moved, not requested again.
fn relocate_renamed(
    printer: &Printer,
    plan: &Plan,
    store: &OutputStore,
    state: &mut JournalState,
    decisions: &mut [Decision],
    journal: &mut JournalWriter,
) -> Result<usize, CommandError> {
    let mut moved = 0;
    for (i, decision) in decisions.iter_mut().enumerate() {
        let Decision::Done { record, relocate: true } = decision else { continue };
        let task = &plan.tasks[i];
        let Some(old) = state.latest.get(record).cloned() else { continue };
        let mut new = TaskRecord { id: task.id.to_string(), parts: task.parts.to_hex(), at: now(), ..old.clone() };
        for output in &mut new.outputs {
            let ext = output.path.rsplit('.').next().unwrap_or("png").to_owned();
            let image_to = format!("{}.{ext}", task.output);
            let sidecar_to = format!("{}.json", task.output);
            let target = store.prepare(&image_to).map_err(|e| CommandError::fatal(e.to_string()))?;
            // Whatever is at the new name is kept, not overwritten (it may be another task's
            // output that moves next: it is then taken from where it was kept).
            let fp = task.fingerprint.to_hex();
            if let Some(aside) = superseded::move_aside(store.root(), &task.output, &task.id, &fp).map_err(fs_fatal)? {
                let record = Record::Superseded(aside);
                journal.append(&record);
                state.apply(&record);
            }
            let (from_image, from_sidecar) = current_place(store, state, output);
            std::fs::rename(&from_image, &target)
                .map_err(|e| CommandError::fatal(format!("cannot move {}: {e}", from_image.display())))?;
            let _ = std::fs::rename(from_sidecar, store.resolve(&sidecar_to));
            if let Ok(meta) = std::fs::metadata(&target) {
                output.mtime_ns = crate::checkpoint::store::mtime_ns(&meta);
            }
            output.path = image_to;
            output.sidecar = sidecar_to;
        }
        let _ = strip_extension;
        journal.append(&Record::task(new.clone()));
        state.latest.insert(new.id.clone(), new);
        *decision = Decision::Done { record: task.id.to_string(), relocate: false };
        moved += 1;
    }
    if moved > 0 {
        printer.note(&format!("moved the outputs of {moved} done tasks to their new names (no request sent)"));
    }
    Ok(moved)
}

/// Where a recorded output is now: at its path, or kept under `.nanobatch/superseded/` when
/// another output was moved onto its name first.
fn current_place(store: &OutputStore, state: &JournalState, output: &OutputRecord) -> (PathBuf, PathBuf) {
    let at_path = (store.resolve(&output.path), store.resolve(&output.sidecar));
    if at_path.0.exists() {
        return at_path;
    }
    let kept = state.superseded.iter().rev().find_map(|s| {
        let k = s.from.iter().position(|f| *f == output.path)?;
        let o = s.outputs.get(k)?;
        (o.blake3 == output.blake3 || o.sha256 == output.sha256 && !o.sha256.is_empty())
            .then(|| (store.resolve(&o.path), store.resolve(&o.sidecar)))
    });
    kept.unwrap_or(at_path)
}

/// `--fresh`: forget this manifest's runs in the directory and delete the outputs they wrote,
/// after asking (see [`crate::checkpoint::fresh`] for what is deleted and what is kept).
fn start_over(printer: &Printer, run_dir: &RunDir, manifest: &Path, yes: bool) -> Result<(), CommandError> {
    let start = fresh::plan(run_dir, manifest).map_err(|e| CommandError::fatal(e.to_string()))?;
    if !start.open_batches.is_empty() {
        return Err(CommandError::invalid(format!(
            "--fresh would forget {} batch jobs still open on the server ({}); they are paid for, and their tasks would be paid again",
            start.open_batches.len(),
            start.open_batches.join(", ")
        ))
        .with_hint(format!(
            "collect them first (run without --fresh) or cancel them: nanobatch cancel {}",
            super::shell_quote(&run_dir.root.display().to_string())
        )));
    }
    if start.files.is_empty() && !start.has_state {
        return Ok(());
    }
    let mut question = format!(
        "--fresh deletes this manifest's state in {} and the {} images (and their sidecars) its runs wrote",
        run_dir.root.display(),
        thousands(start.images as u64)
    );
    if !start.other_manifests.is_empty() {
        question.push_str(&format!(
            "; the runs and files of {} other manifests here ({}) are kept",
            start.other_manifests.len(),
            start.other_manifests.join(", ")
        ));
    }
    if start.kept > 0 {
        question
            .push_str(&format!("; {} files changed since they were written are kept", thousands(start.kept as u64)));
    }
    question.push_str(". Continue? [y/N] ");
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CommandError::invalid(
                "--fresh would delete files; add --yes to confirm when not running interactively",
            ));
        }
        if !crate::ui::confirm(printer, &question) {
            return Err(CommandError::invalid("nothing deleted"));
        }
    }
    let deleted = fresh::execute(run_dir, &start).map_err(fs_fatal)?;
    printer.note(&format!("deleted {} files; starting over", thousands(deleted as u64)));
    Ok(())
}

fn fs_fatal(e: fsutil::FsError) -> CommandError {
    let disk_full = e.is_disk_full();
    let err = CommandError::fatal(e.to_string());
    if disk_full { err.with_hint("free some space, then run the same command again to resume") } else { err }
}

pub fn make_sink(printer: &Printer, json: bool) -> Box<dyn EventSink> {
    if json {
        Box::new(JsonSink::new(*printer))
    } else if printer.verbosity == Verbosity::Quiet {
        Box::new(NullSink)
    } else if printer.stderr_is_terminal {
        Box::new(TerminalSink::new(printer.verbosity == Verbosity::Verbose))
    } else {
        Box::new(PlainSink::new(*printer, Duration::from_secs(10)))
    }
}

async fn run_manifest(
    printer: &Printer,
    args: &RunArgs,
    manifest: Manifest,
    plan: Plan,
    dir: PathBuf,
    options: ExecOptions,
) -> CommandResult {
    let (api, mock) = connect(printer, args, &manifest).await?;
    let mode = match args.mode {
        Mode::Interactive => "interactive",
        Mode::Batch => "batch",
        Mode::Auto => "auto",
    };
    let prepared = prepare(printer, args, &manifest, &plan, &dir, mode)?;
    let Prepared { lock, store, state, decisions, journal, moved: _, changed } = prepared;
    let api = Arc::new(api);
    let batch = match args.mode {
        Mode::Interactive => None,
        Mode::Batch | Mode::Auto => Some(BatchSetup {
            api: api.clone() as Arc<dyn BatchApi>,
            base_url: api.endpoint().base_url.clone(),
            mode: if args.mode == Mode::Batch { BatchMode::All } else { BatchMode::FirstWave },
            limits: batch_limits(args.mock, args.poll_interval),
            interactive_fallback: args.interactive_fallback,
            state_dir: RunDir::new(&dir).state().join("batches"),
        }),
    };
    let keep_turn = plan.has_conversation_successor();
    let thumbs = (!args.no_html).then(|| Arc::new(thumbs::Background::start(&dir)));
    let ctx = Arc::new(UnitContext {
        manifest: Arc::new(manifest),
        plan: Arc::new(plan),
        api: api.clone() as Arc<dyn ImageApi>,
        store,
        tier: Tier::Interactive,
        strict: options.strict,
        keep_turn,
        thumbs: thumbs.clone(),
    });
    let cancel = Cancel::new();
    let listener = {
        let p = *printer;
        cancel.listen(move || {
            p.note(
                "stopping: no new requests; waiting for those in flight (they may be billed). Ctrl-C again to abort.",
            )
        })
    };
    let mut sink = make_sink(printer, args.json);
    // What planning and the snapshot freed is not reused by the run's threads.
    let released = crate::memory::release_freed();
    tracing::debug!(released, "freed memory returned before the run");
    let result =
        crate::exec::execute(ctx.clone(), options, &decisions, &state, journal, sink.as_mut(), cancel, batch).await;
    listener.abort();
    drop(sink);
    if let Some(thumbs) = thumbs {
        let dropped = thumbs.finish();
        tracing::debug!(dropped, "background thumbnails stopped");
    }
    // What the run needed (the journal's state, the plan, the store) goes before the reports
    // are built: memory at the end does not hold both.
    // Freed on the side: tearing down the state of 100,000 tasks takes a tenth of a second.
    std::thread::spawn(move || drop(state));
    let manifest = ctx.manifest.clone();
    drop(ctx);
    // Idle connections hold their read buffers.
    drop(api);
    // The reports are built on this thread, in an arena that the run's freed buffers are not in.
    let released = crate::memory::release_freed();
    tracing::debug!(released, "freed memory returned before the reports");
    let code = finish(printer, args, &manifest, &dir, &decisions, !changed, result);
    drop(lock);
    if let Some(server) = mock {
        server.stop().await;
    }
    code
}

/// Batch job limits; the built-in emulator's jobs finish in a second, so it is polled often.
fn batch_limits(mock: bool, poll: Option<Duration>) -> BatchLimits {
    let mut limits = BatchLimits::default();
    if mock {
        limits.first_poll = Duration::from_millis(250);
        limits.max_poll = Duration::from_secs(1);
    }
    if let Some(p) = poll {
        limits.first_poll = p;
        limits.max_poll = limits.max_poll.max(p);
    }
    limits
}

/// Writes the reports, prints the summary, and picks the exit code.
pub fn finish(
    printer: &Printer,
    args: &RunArgs,
    manifest: &Manifest,
    dir: &Path,
    decisions: &[Decision],
    unchanged: bool,
    result: Result<RunOutcome, ExecError>,
) -> CommandResult {
    let resume = resume_command(&args.manifest, dir);
    let started = std::time::Instant::now();
    let run_dir = RunDir::new(dir);
    // Nothing ran and neither the plan nor the journal changed before the run: the reports on
    // disk say everything already.
    let idle = unchanged
        && matches!(&result, Ok(o) if o.progress.to_run == 0 && o.stop.is_none())
        && run_dir.report_json().exists()
        && (args.no_html || run_dir.report_html().exists());
    let report = if idle {
        // Nothing ran and nothing moved: the reports already say everything (and rewriting
        // those of 100,000 tasks would take a second).
        let mut paths = vec![run_dir.report_json().display().to_string()];
        if !args.no_html {
            paths.push(run_dir.report_html().display().to_string());
        }
        Ok(crate::commands::report::ReportsWritten { paths, ..Default::default() })
    } else {
        crate::commands::report::write_reports(printer, dir, !args.no_html)
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, idle, "reports written");
    let outcome = match result {
        Ok(o) => o,
        Err(ExecError::Aborted) => {
            printer.error("aborted; requests in flight were abandoned (they may have been billed)");
            printer.hint(&format!("resume with: {resume}"));
            return Ok(exit_code::INTERRUPTED);
        }
        Err(ExecError::Journal(e)) if e.is_disk_full() => {
            return Err(CommandError::fatal(format!("cannot write the journal: {e} (the disk is full)")).with_hint(
                format!("the journal ends with its last whole record; free some space, then resume with: {resume}"),
            ));
        }
        Err(e) => {
            return Err(
                CommandError::fatal(e.to_string()).with_hint(format!("after fixing this, resume with: {resume}"))
            );
        }
    };
    let p = &outcome.progress;
    let previously_failed = decisions.iter().filter(|d| matches!(d, Decision::Failed { .. })).count() as u64;
    let already_done = decisions.iter().filter(|d| matches!(d, Decision::Done { .. })).count() as u64;
    printer.note(&outcome_line(&manifest.name, p, already_done, previously_failed));
    let mut money = format!("spent {} this run", p.spent_usd);
    if !p.possibly_billed_usd.is_zero() {
        money.push_str(&format!(
            " + {} possibly billed ({} attempts with unknown outcome)",
            p.possibly_billed_usd, p.possibly_billed_attempts
        ));
    }
    printer.note(&money);
    if let Ok(written) = &report
        && written.removed_tasks > 0
    {
        printer.note(&format!(
            "spent in {} over all runs: {}, of which {} on {} no longer in the manifest (`nanobatch status {}` lists their files)",
            dir.display(),
            written.spent,
            written.removed_spent,
            counted(written.removed_tasks, "task"),
            super::shell_quote(&dir.display().to_string())
        ));
    }
    if p.superseded > 0 {
        printer.note(&format!(
            "kept {} that new ones replaced, in {} (delete them with: nanobatch prune {})",
            counted(p.superseded, "earlier image"),
            dir.join(superseded::DIR).display(),
            super::shell_quote(&dir.display().to_string())
        ));
    }
    if previously_failed > 0 {
        printer
            .note(&format!("{previously_failed} tasks failed in an earlier run; add --retry-failed to try them again"));
    }
    printer.note(&format!("images in {}", dir.display()));
    if let Ok(written) = &report {
        let unchanged = if idle { " (unchanged: nothing ran)" } else { "" };
        printer.note(&format!("report: {}{unchanged}", written.paths.join(", ")));
    }
    if let Err(e) = &report {
        printer.warn(&format!("the report could not be written: {e}"));
    }
    let failures = p.failed + p.no_image + p.skipped + previously_failed;
    if args.json {
        let status = match &outcome.stop {
            Some(reason) => reason.label(),
            None if failures > 0 => "completed_with_failures",
            None => "completed",
        };
        let reports = report.as_ref().map(|w| w.paths.as_slice()).unwrap_or_default();
        printer.data(&finished_json(&RunTotals::new(status, p, already_done, previously_failed, reports)));
    }
    let code = match &outcome.stop {
        Some(StopReason::Interrupted) => {
            printer.hint(&format!("resume with: {resume}"));
            exit_code::INTERRUPTED
        }
        Some(reason @ (StopReason::Budget { .. } | StopReason::DailyQuota { .. })) => {
            printer.error(&format!("stopped: {reason}"));
            printer.hint(&format!("resume with: {resume}"));
            exit_code::STOPPED_BY_GUARD
        }
        Some(StopReason::Fatal(message)) => {
            printer.error(message);
            printer.hint(&format!("after fixing this, resume with: {resume}"));
            exit_code::FATAL
        }
        Some(StopReason::FailFast { id }) => {
            printer.error(&format!("stopped after task `{id}` failed (--fail-fast)"));
            exit_code::TASKS_FAILED
        }
        None if failures > 0 => exit_code::TASKS_FAILED,
        None => exit_code::OK,
    };
    Ok(code)
}
