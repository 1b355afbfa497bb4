//! `nanobatch review DIR`: serves the run's contact sheet as a local web app on 127.0.0.1.

use super::{CommandError, CommandResult};
use crate::cli::ReviewArgs;
use crate::ui::Printer;

pub fn run(printer: &Printer, args: &ReviewArgs) -> CommandResult {
    let _ = (printer, args);
    Err(CommandError::fatal("not yet"))
}
