//! `nanobatch cancel DIR`: cancel the server-side batch jobs of a run directory; and the glue
//! of `run --mode batch|auto`.

use std::path::PathBuf;

use super::{CommandError, CommandResult};
use crate::cli::{CancelArgs, RunArgs};
use crate::exec::ExecOptions;
use crate::manifest::Manifest;
use crate::plan::Plan;
use crate::ui::Printer;

pub fn run(_printer: &Printer, args: &CancelArgs) -> CommandResult {
    Err(CommandError::invalid(format!("{}: no server-side batch jobs to cancel", args.dir.display())))
}

pub fn run_batch_mode(
    _printer: &Printer,
    _args: RunArgs,
    _manifest: Manifest,
    _plan: Plan,
    _dir: PathBuf,
    _options: ExecOptions,
) -> CommandResult {
    Err(CommandError::invalid("batch mode is not available in this build"))
}
