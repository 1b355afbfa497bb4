//! What the executor tells the outside world. The dispatcher emits [`Event`]s to an
//! [`EventSink`] (the terminal UI, the `--json` stream), synchronously, with the running
//! [`Progress`]; it never prints.

use std::time::Duration;

use serde::Serialize;

use crate::catalog::{TokenCounts, Usd};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total: u64,
        to_run: u64,
        already_done: u64,
        already_failed: u64,
        estimate_usd: Usd,
        jobs: Vec<(String, u64)>,
        concurrency: usize,
    },
    AttemptStarted {
        id: String,
        job: String,
        attempt: u32,
    },
    AttemptFailed {
        id: String,
        job: String,
        /// The request's number for this task (429 answers included).
        attempt: u32,
        /// Attempts that count against `retry.attempts` so far; a 429 is not one of them (the
        /// quota talking, retried apart: `class` is `rate_limited`).
        counted: u32,
        class: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
        possibly_billed: bool,
    },
    TaskFinished {
        id: String,
        job: String,
        status: &'static str,
        attempts: u32,
        cost_usd: Usd,
        tokens: TokenCounts,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    TaskSkipped {
        id: String,
        job: String,
        reason: String,
    },
    Cooldown {
        model: String,
        seconds: f64,
    },
    Waiting {
        model: String,
        until: String,
        reason: String,
    },
    Stopping {
        reason: &'static str,
        message: String,
        /// A budget stop's figures, exact (they add up to what counts against the budget).
        #[serde(skip_serializing_if = "Option::is_none")]
        budget: Option<super::budget::BudgetFigures>,
    },
    Note {
        message: String,
    },
    Finished {
        status: &'static str,
    },
}

/// Counters the UI shows; updated by the dispatcher before each event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub total: u64,
    pub to_run: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub no_image: u64,
    pub skipped: u64,
    pub in_flight: u64,
    pub retries: u64,
    pub possibly_billed_attempts: u64,
    pub spent_usd: Usd,
    pub possibly_billed_usd: Usd,
    /// Earlier images moved aside (not overwritten) by this run's new ones.
    pub superseded: u64,
    pub tokens: TokenCounts,
    #[serde(skip)]
    pub elapsed: Duration,
    /// Per job: (name, finished, to run).
    pub jobs: Vec<(String, u64, u64)>,
}

impl Progress {
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.no_image + self.skipped
    }
}

pub trait EventSink: Send {
    fn emit(&mut self, event: &Event, progress: &Progress);
    /// Called about once a second with fresh counters (progress bars, periodic lines).
    fn tick(&mut self, _progress: &Progress) {}
}

/// Discards everything (tests, `-q`).
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&mut self, _: &Event, _: &Progress) {}
}
