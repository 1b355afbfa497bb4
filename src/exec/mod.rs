//! Execution: runs the outstanding tasks of a plan against an [`ImageApi`], with bounded
//! concurrency, per-model rate limits, retries by failure class, a budget, and a journal.
//!
//! The dispatcher ([`dispatcher`]) owns all run state and is the only journal writer; units
//! ([`unit`]) do one attempt each and report back as data. A failed request is data, never an
//! `Err`: only run-fatal conditions (the journal cannot be written, Ctrl-C twice) end `execute`
//! with an error.

pub mod batch;
pub mod budget;
pub mod cancel;
mod dispatcher;
pub mod events;
pub mod limits;
pub mod request;
pub mod retry;
pub mod unit;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use dispatcher::next_pacific_midnight;

use crate::catalog::{Tier, Usd};
use crate::checkpoint::journal::JournalWriter;
use crate::checkpoint::resume::{Decision, JournalState};
use crate::fsutil::FsError;
use crate::manifest::model::{Rate, RetryPolicy};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Requests in flight at most (`-j`).
    pub jobs: usize,
    /// Rate limits by model id.
    pub rates: BTreeMap<String, Rate>,
    pub retry: RetryPolicy,
    /// Total spend allowed in this output directory, all runs included.
    pub max_cost: Option<Usd>,
    pub fail_fast: bool,
    pub wait_for_quota: bool,
    /// A size mismatch fails the task instead of warning.
    pub strict: bool,
    pub tier: Tier,
}

/// Why a run stopped before finishing every task.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    Interrupted,
    Budget(budget::BudgetFigures),
    DailyQuota { model: String, message: String },
    FailFast { id: String },
    Fatal(String),
}

impl StopReason {
    pub fn label(&self) -> &'static str {
        match self {
            StopReason::Interrupted => "interrupted",
            StopReason::Budget { .. } => "budget",
            StopReason::DailyQuota { .. } => "quota",
            StopReason::FailFast { .. } => "fail_fast",
            StopReason::Fatal(_) => "fatal",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Interrupted => write!(f, "interrupted: no new requests; waiting for those in flight"),
            StopReason::Budget(figures) => write!(f, "{figures}"),
            StopReason::DailyQuota { model, message } => {
                write!(f, "daily quota of {model} exhausted ({message}); it resets at midnight Pacific")
            }
            StopReason::FailFast { id } => write!(f, "task `{id}` failed and --fail-fast is set"),
            StopReason::Fatal(message) => write!(f, "{message}"),
        }
    }
}

#[derive(Debug)]
pub struct RunOutcome {
    pub stop: Option<StopReason>,
    pub progress: events::Progress,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot write the journal: {0}")]
    Journal(FsError),
    #[error("aborted")]
    Aborted,
    #[error("internal error: {0}")]
    Internal(String),
}

/// How to use the Batch API (`--mode batch|auto`).
pub struct BatchSetup {
    pub api: Arc<dyn crate::api::BatchApi>,
    /// Recorded in the journal (no key) so that `nanobatch cancel` can reach the jobs.
    pub base_url: String,
    pub mode: batch::BatchMode,
    pub limits: batch::BatchLimits,
    /// Tasks of failed or expired jobs run interactively.
    pub interactive_fallback: bool,
    /// Where downloaded result files are kept while they are read.
    pub state_dir: std::path::PathBuf,
}

/// Runs every task that `decisions` marks to run. `journal_state` is what the journal held
/// before (spend so far, attempts already made, batch jobs still open).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    ctx: Arc<unit::UnitContext>,
    options: ExecOptions,
    decisions: &[Decision],
    journal_state: &JournalState,
    journal: JournalWriter,
    sink: &mut dyn events::EventSink,
    cancel: cancel::Cancel,
    batch: Option<BatchSetup>,
) -> Result<RunOutcome, ExecError> {
    dispatcher::Dispatcher::new(ctx, options, decisions, journal_state, journal, sink, cancel, batch).run().await
}

/// Default per-request timeout: the server's own limit for a unary call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
