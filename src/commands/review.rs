//! `nanobatch review DIR [--port P] [--open]`: serves the run's contact sheet as a local web app
//! on 127.0.0.1 until Ctrl-C. The URL (with its token) is printed on stdout.

use super::{CommandError, CommandResult};
use crate::cli::ReviewArgs;
use crate::exit_code;
use crate::review::index::IndexError;
use crate::review::server::{self, ServeError};
use crate::ui::{Printer, counted};

pub fn run(printer: &Printer, args: &ReviewArgs) -> CommandResult {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let running = server::start(&args.dir, args.port).await.map_err(|e| match e {
            ServeError::Index(IndexError::NoRun(_)) => CommandError::invalid(e.to_string()),
            ServeError::Bind { .. } => CommandError::fatal(e.to_string())
                .with_hint("choose another port with --port, or leave it out for any free one"),
            e => CommandError::fatal(e.to_string()),
        })?;
        for note in &running.notes {
            printer.warn(note);
        }
        let url = running.url();
        printer.note(&format!(
            "reviewing {} ({}) from {}: open the address below; Ctrl-C stops",
            running.name,
            counted(running.tasks as u64, "task"),
            args.dir.display()
        ));
        printer.data(&url);
        if args.open
            && let Err(e) = open::that_detached(&url)
        {
            printer.warn(&format!("cannot start a browser ({e}); open the address yourself"));
        }
        running.until_interrupted().await;
        super::mark::refresh_reports(printer, &args.dir);
        printer.note("review stopped; every mark is saved in the run directory, and the reports show them");
        Ok(exit_code::OK)
    })
}
