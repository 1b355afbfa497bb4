//! `nanobatch export DIR DEST [--approved|--all] [--zip]`: the approved (or all) images with
//! their sidecars and a CSV, into a new directory or zip file.

use super::mark::load_index;
use super::{CommandError, CommandResult, shell_quote};
use crate::cli::ExportArgs;
use crate::exit_code;
use crate::review::export::{self, CSV_NAME, ExportError, Selection};
use crate::ui::{Printer, counted};

pub fn run(printer: &Printer, args: &ExportArgs) -> CommandResult {
    let index = load_index(&args.dir)?;
    for note in &index.notes {
        printer.warn(note);
    }
    let selection = if args.all { Selection::All } else { Selection::Approved };
    let chosen = export::select(&index, selection).map_err(export_error)?;
    if chosen.images == 0 {
        let dir = shell_quote(&args.dir.display().to_string());
        return Err(match selection {
            Selection::Approved => CommandError::invalid(format!("no image in {} is approved yet", args.dir.display()))
                .with_hint(format!(
                    "approve images with `nanobatch review {dir}` or `nanobatch mark {dir} --approve TASK...`; or export every image with --all"
                )),
            Selection::All => CommandError::invalid(format!("{} holds no image yet", args.dir.display())),
        });
    }
    export::write(&index, &chosen, &args.dest, args.zip).map_err(export_error)?;
    printer.note(&format!(
        "exported {} with their sidecars and {CSV_NAME} to {}",
        counted(chosen.images as u64, "image"),
        args.dest.display()
    ));
    Ok(exit_code::OK)
}

fn export_error(e: ExportError) -> CommandError {
    match e {
        ExportError::DestinationExists(_) | ExportError::ZipExists(_) | ExportError::InsideRun { .. } => {
            CommandError::invalid(e.to_string())
        }
        e => CommandError::fatal(e.to_string()),
    }
}
