//! One module per verb: glue between the command line and the library. Errors here carry the
//! exit code; `anyhow` is not needed because every failure maps to a documented code.

pub mod cancel;
pub mod export;
pub mod init;
pub mod mark;
pub mod mock_server;
pub mod models;
pub mod plan;
pub mod prune;
pub mod report;
pub mod review;
pub mod run;
pub mod status;
pub mod validate;

use std::path::{Path, PathBuf};

use crate::checkpoint::RunDir;
use crate::cli::{Cli, Command};
use crate::exit_code;
use crate::manifest::{self, Manifest};
use crate::plan::Plan;
use crate::ui::{Printer, Verbosity, counted};

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct CommandError {
    pub code: i32,
    pub message: String,
    /// Printed after the message, one `hint:` line each (commands to run next, complete).
    pub hints: Vec<String>,
    /// Already printed (diagnostics): print nothing more.
    pub printed: bool,
}

impl CommandError {
    pub fn new(code: i32, message: impl Into<String>) -> CommandError {
        CommandError { code, message: message.into(), hints: Vec::new(), printed: false }
    }

    pub fn invalid(message: impl Into<String>) -> CommandError {
        CommandError::new(exit_code::INVALID_INPUT, message)
    }

    pub fn fatal(message: impl Into<String>) -> CommandError {
        CommandError::new(exit_code::FATAL, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    pub(crate) fn printed(code: i32) -> CommandError {
        CommandError { code, message: String::new(), hints: Vec::new(), printed: true }
    }
}

pub type CommandResult = Result<i32, CommandError>;

/// Runs a parsed command line; returns the exit code.
pub fn dispatch(cli: Cli) -> i32 {
    let verbosity = if cli.global.quiet {
        Verbosity::Quiet
    } else if cli.global.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let printer = Printer::new(verbosity);
    let result = match cli.command {
        Command::Validate(args) => validate::run(&printer, &args),
        Command::Plan(args) => plan::run(&printer, &args),
        Command::Run(args) => run::run(&printer, *args),
        Command::Status(args) => status::run(&printer, &args),
        Command::Report(args) => report::run(&printer, &args),
        Command::Models(args) => models::run(&printer, &args),
        Command::MockServer(args) => mock_server::run(&printer, &args),
        Command::Init(args) => init::run(&printer, &args),
        Command::Cancel(args) => cancel::run(&printer, &args),
        Command::Review(args) => review::run(&printer, &args),
        Command::Mark(args) => mark::run(&printer, &args),
        Command::Export(args) => export::run(&printer, &args),
        Command::Prune(args) => prune::run(&printer, &args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.printed {
                printer.error(&crate::redact::redact_text(&e.message));
                for hint in &e.hints {
                    printer.hint(hint);
                }
            }
            e.code
        }
    }
}

/// Loads and plans a manifest; prints every problem and returns exit code 3 on failure.
pub fn load_and_plan(printer: &Printer, path: &Path) -> Result<(Manifest, Plan), CommandError> {
    let manifest = match manifest::load(path) {
        Ok(m) => m,
        Err(diagnostics) => {
            printer.diagnostics(&diagnostics.to_string());
            return Err(CommandError::printed(exit_code::INVALID_INPUT));
        }
    };
    for warning in manifest.warnings.warnings() {
        printer.diagnostics(&warning.to_string());
    }
    let started = std::time::Instant::now();
    match crate::plan::expand(&manifest) {
        Ok(plan) => {
            tracing::debug!(tasks = plan.len(), ms = started.elapsed().as_millis() as u64, "planned");
            Ok((manifest, plan))
        }
        Err(diagnostics) => {
            printer.diagnostics(&diagnostics.to_string());
            Err(CommandError::printed(exit_code::INVALID_INPUT))
        }
    }
}

/// Every directory the plan writes to can be written (see [`store::preflight`]): checked before
/// anything is sent, so that a read-only or symlinked-away folder costs nothing.
///
/// [`store::preflight`]: crate::checkpoint::store::preflight
pub fn check_output_dirs(plan: &Plan, dir: &Path) -> Result<(), CommandError> {
    let dirs: std::collections::BTreeSet<&str> =
        plan.tasks.iter().filter_map(|t| t.output.rsplit_once('/').map(|(parent, _)| parent)).collect();
    let problems = crate::checkpoint::store::preflight(dir, dirs);
    if problems.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 10;
    let mut message =
        format!("{} cannot be written; nothing was sent:", counted(problems.len() as u64, "output folder"));
    for problem in problems.iter().take(SHOWN) {
        message.push_str("\n  ");
        message.push_str(problem);
    }
    if problems.len() > SHOWN {
        message.push_str(&format!("\n  … and {} more", problems.len() - SHOWN));
    }
    Err(CommandError::invalid(message)
        .with_hint("fix the folders (or choose another output directory with -o), then run the same command again"))
}

/// Where a run lives: `-o` (relative to the current directory, like any path on a command
/// line), else the manifest's `output_dir:`, else `out/<name>` next to the manifest. Like CSV
/// files and reference images, the default resolves from the manifest's folder, so the same
/// manifest finds its journal whatever the working directory.
pub fn output_dir(manifest: &Manifest, flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    if let Some(dir) = &manifest.output_dir {
        return dir.clone();
    }
    manifest.dir.join(default_dir_name(manifest))
}

/// `out/<slug of the name>`.
fn default_dir_name(manifest: &Manifest) -> PathBuf {
    PathBuf::from("out").join(crate::manifest::template::slug(&manifest.name))
}

/// A run of this manifest where the default output directory used to be: `out/<name>` under the
/// current directory (before it resolved from the manifest's folder). Found only when the
/// default applies, the new home holds no run yet, and the old one's plan snapshot names this
/// manifest (same file, or same text).
pub fn earlier_default_run(manifest: &Manifest, flag: Option<&Path>) -> Option<PathBuf> {
    if flag.is_some() || manifest.output_dir.is_some() {
        return None;
    }
    let old = default_dir_name(manifest);
    let new = output_dir(manifest, None);
    let old_run = RunDir::new(&old);
    if !old_run.exists() || RunDir::new(&new).exists() || same_file(&old, &new) {
        return None;
    }
    let header = crate::checkpoint::snapshot::PlanSnapshot::read_header(&old_run.plan()).ok()?;
    let same_manifest =
        header.manifest_sha256 == manifest.hash || same_file(Path::new(&header.manifest), &manifest.file);
    same_manifest.then_some(old)
}

/// Whether two paths name the same existing file or directory.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The error `run` stops with when [`earlier_default_run`] found a run (nothing sent).
pub fn earlier_run_error(manifest: &Manifest, old: &Path, continue_there: &str) -> CommandError {
    let new = output_dir(manifest, None);
    CommandError::invalid(format!(
        "this manifest's earlier run is in {old}: the default output directory used to be out/<name> under \
         the current directory, and is now next to the manifest ({new}), which holds no run yet; \
         nothing is sent until you choose, since starting over there would pay again for what {old} holds",
        old = old.display(),
        new = new.display()
    ))
    .with_hint(format!("continue that run where it is: {continue_there}"))
    .with_hint(format!("or move it to the new default: {}", move_command(old, &new)))
}

/// An error shown as a warning (a command that goes on regardless, such as `plan`).
pub fn warn_with_hints(printer: &Printer, error: &CommandError) {
    printer.warn(&error.message);
    for hint in &error.hints {
        printer.hint(hint);
    }
}

/// `mkdir -p NEW_PARENT && mv OLD NEW`.
pub fn move_command(old: &Path, new: &Path) -> String {
    let parent = new.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    format!(
        "mkdir -p {} && mv {} {}",
        shell_quote(&parent.display().to_string()),
        shell_quote(&old.display().to_string()),
        shell_quote(&new.display().to_string())
    )
}

/// The command to run to continue.
pub fn resume_command(manifest: &Path, dir: &Path) -> String {
    format!(
        "nanobatch run {} -o {}",
        shell_quote(&manifest.display().to_string()),
        shell_quote(&dir.display().to_string())
    )
}

pub fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A tokio runtime for commands that need one.
///
/// Blocking threads are capped at a few per core (tokio's default is 512): received pieces are
/// written in short blocking jobs, and every new thread gets its own glibc arena, so a pool that
/// grew to one thread per request in flight made a long run's memory creep up (4K images at
/// `-j 64`: 146 MiB over a run of 1,000 tasks became 195 MiB over 10,000; capped, the RSS is
/// level through the run). The disk, not the thread count, bounds those jobs. No blocking job
/// waits for another, so the cap cannot deadlock.
pub fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4 * cores + 4)
        .enable_all()
        .build()
        .map_err(|e| CommandError::fatal(format!("cannot start the async runtime: {e}")))
}
