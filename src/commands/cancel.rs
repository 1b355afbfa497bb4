//! `nanobatch cancel DIR`: cancel the server-side batch jobs a run directory's journal lists as
//! still open. Cancelled jobs stop billing for what they have not done; their tasks run again
//! (batch or interactive) at the next `nanobatch run`.

use std::sync::Arc;

use super::{CommandError, CommandResult, runtime};
use crate::api::BatchApi;
use crate::api::http::{AuthMode, Endpoint, HttpApi, HttpOptions};
use crate::checkpoint::RunDir;
use crate::checkpoint::journal::{self, JournalWriter};
use crate::checkpoint::lock::RunLock;
use crate::checkpoint::records::{BatchFinished, Record, now};
use crate::checkpoint::resume::JournalState;
use crate::cli::CancelArgs;
use crate::redact::Secret;
use crate::ui::Printer;
use crate::{env_vars, exit_code};

pub fn run(printer: &Printer, args: &CancelArgs) -> CommandResult {
    let run_dir = RunDir::new(&args.dir);
    let contents = journal::read(&run_dir.journal())
        .map_err(|e| CommandError::fatal(e.to_string()))?
        .ok_or_else(|| CommandError::invalid(format!("{} holds no nanobatch run", args.dir.display())))?;
    let state = JournalState::from_records(&contents.records);
    let open: Vec<_> = state.open_batches().into_iter().cloned().collect();
    if open.is_empty() {
        printer.note(&format!("{}: no server-side batch job is open", args.dir.display()));
        return Ok(exit_code::OK);
    }
    let key = env_vars::get(env_vars::GOOGLE_API_KEY)
        .or_else(|| env_vars::get(env_vars::GEMINI_API_KEY))
        .ok_or_else(|| CommandError::invalid("no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)"))?;
    let base_url = args
        .base_url
        .clone()
        .or_else(|| open.first().map(|b| b.base_url.clone()).filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "https://generativelanguage.googleapis.com".to_owned());
    let auth = if args.query_key { AuthMode::Query } else { AuthMode::Header };
    let endpoint = Endpoint { base_url, api_version: "v1beta".into(), auth, key: Some(Secret::new(key)) };
    let api = Arc::new(HttpApi::new(endpoint, HttpOptions::default()).map_err(|e| CommandError::fatal(e.to_string()))?);
    // With the lock free, record the outcome now; otherwise the running process will.
    let lock = RunLock::acquire(&run_dir.state(), false).ok();
    let rt = runtime()?;
    let mut failures = 0;
    let mut finished = Vec::new();
    rt.block_on(async {
        for job in &open {
            match api.cancel(&job.name).await {
                Ok(()) => {
                    printer.note(&format!("cancelled {} ({} tasks of {})", job.name, job.ids.len(), job.model));
                    if let Ok(op) = api.get(&job.name).await
                        && op.is_terminal()
                    {
                        finished.push(BatchFinished { name: job.name.clone(), state: op.state, at: now() });
                    }
                }
                Err(e) => {
                    failures += 1;
                    printer.error(&format!("cannot cancel {}: {e}", job.name));
                }
            }
        }
    });
    if lock.is_some() && !finished.is_empty() {
        let mut writer = JournalWriter::open(&run_dir.journal()).map_err(|e| CommandError::fatal(e.to_string()))?;
        for f in finished {
            writer.append(&Record::BatchFinished(f));
        }
        writer.commit().map_err(|e| CommandError::fatal(e.to_string()))?;
    } else if lock.is_none() {
        printer.note("a run is attached to this directory; it will see the cancellation at its next poll");
    }
    Ok(if failures == 0 { exit_code::OK } else { exit_code::FATAL })
}
