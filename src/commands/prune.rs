//! `nanobatch prune DIR`: delete the earlier images a run directory keeps under
//! `.nanobatch/superseded/` (a paid image is never deleted otherwise), after saying what and
//! asking.

use std::io::IsTerminal;

use super::{CommandError, CommandResult, shell_quote};
use crate::checkpoint::RunDir;
use crate::checkpoint::lock::RunLock;
use crate::checkpoint::superseded;
use crate::cli::PruneArgs;
use crate::exit_code;
use crate::fsutil;
use crate::ui::{Printer, bytes, thousands};

/// Files listed before asking.
const SHOWN: usize = 10;

pub fn run(printer: &Printer, args: &PruneArgs) -> CommandResult {
    let run_dir = RunDir::new(&args.dir);
    if !run_dir.exists() {
        return Err(CommandError::invalid(format!("{} holds no nanobatch run", args.dir.display())));
    }
    // A run writing here could be moving an image aside right now.
    let lock = RunLock::acquire(&run_dir.state(), false).map_err(|e| CommandError::fatal(e.to_string()))?;
    let files = superseded::all_files(&args.dir);
    let folder = args.dir.join(superseded::DIR);
    if files.is_empty() {
        printer.note(&format!("{}: no superseded images to delete", args.dir.display()));
        return Ok(exit_code::OK);
    }
    let size: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let mut text = format!(
        "{} files ({}) of earlier images in {}:\n",
        thousands(files.len() as u64),
        bytes(size),
        folder.display()
    );
    for f in files.iter().take(SHOWN) {
        text.push_str(&format!("  {}\n", f.strip_prefix(&folder).unwrap_or(f).display()));
    }
    if files.len() > SHOWN {
        text.push_str(&format!("  … and {} more\n", thousands((files.len() - SHOWN) as u64)));
    }
    printer.note(text.trim_end());
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CommandError::invalid(
                "prune deletes paid images; add --yes to confirm when not on a terminal",
            )
            .with_hint(format!("nanobatch prune {} --yes", shell_quote(&args.dir.display().to_string()))));
        }
        if !crate::ui::confirm(printer, "Delete them? They cannot be generated again for free. [y/N] ") {
            return Err(CommandError::invalid("nothing deleted"));
        }
    }
    let mut deleted = 0u64;
    for f in &files {
        match fsutil::remove_file(f) {
            Ok(()) => deleted += 1,
            Err(e) => printer.warn(&e.to_string()),
        }
    }
    // The empty folders go too; anything that could not be deleted keeps its folder.
    remove_empty_dirs(&folder);
    drop(lock);
    printer.note(&format!("deleted {} files ({})", thousands(deleted), bytes(size)));
    Ok(if deleted == files.len() as u64 { exit_code::OK } else { exit_code::FATAL })
}

/// Removes `dir` and the directories below it that are empty, deepest first.
fn remove_empty_dirs(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
