//! Progress displays for `run`: indicatif bars on a terminal, plain periodic lines when stderr
//! is a pipe or a file, one JSON event per line on stdout with `--json`.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use serde::Serialize;

use super::{Printer, duration, thousands};
use crate::catalog::Usd;
use crate::exec::events::{Event, EventSink, Progress};

/// `12.3 img/min · ETA 4m10s · $1.2345 spent · 3 retries · 1 failed`
fn summary_line(p: &Progress) -> String {
    let minutes = p.elapsed.as_secs_f64() / 60.0;
    let done = p.succeeded + p.no_image + p.failed;
    let rate = if minutes > 0.0 { p.succeeded as f64 / minutes } else { 0.0 };
    let mut parts = vec![format!("{rate:.1} img/min")];
    let remaining = p.to_run.saturating_sub(p.finished());
    if done > 0 && remaining > 0 && minutes > 0.0 {
        let per_task = p.elapsed.as_secs_f64() / done as f64;
        parts.push(format!("ETA {}", duration(Duration::from_secs_f64(per_task * remaining as f64))));
    }
    parts.push(format!("{} spent", p.spent_usd));
    if !p.possibly_billed_usd.is_zero() {
        parts.push(format!("{} possibly billed", p.possibly_billed_usd));
    }
    parts.push(format!("{} tokens", thousands(p.tokens.total())));
    if p.retries > 0 {
        parts.push(format!("{} retries", p.retries));
    }
    // The same words and counts as the summary at the end.
    if p.failed > 0 {
        parts.push(format!("{} failed", p.failed));
    }
    if p.no_image > 0 {
        parts.push(format!("{} without image", p.no_image));
    }
    if p.skipped > 0 {
        parts.push(format!("{} skipped", p.skipped));
    }
    parts.join(" · ")
}

fn event_line(event: &Event) -> Option<String> {
    match event {
        Event::AttemptFailed { id, counted, class, message, retry_in_ms, possibly_billed, .. } => {
            let billed = if *possibly_billed { " (possibly billed)" } else { "" };
            let message = first_line(message);
            // A 429 does not use up `retry.attempts`; numbering it would show "attempt 3" of 2.
            let (head, tail) = match retry_in_ms {
                Some(ms) => ("retry", format!(", retrying in {}", duration(Duration::from_millis(*ms)))),
                None => ("attempt failed", "; not retried now (stopping), the next run will".to_owned()),
            };
            Some(if *class == "rate_limited" {
                format!("  rate-limited {head} {id}: {message}{tail}")
            } else {
                format!("  {head} {id} (attempt {counted} failed): {class}{billed}: {message}{tail}")
            })
        }
        Event::TaskFinished { id, status: status @ ("failed" | "no_image"), message, .. } => {
            Some(format!("  {status} {id}: {}", message.as_deref().map(first_line).unwrap_or("")))
        }
        Event::TaskFinished { id, message: Some(note), .. } => Some(format!("  note {id}: {note}")),
        Event::TaskSkipped { id, reason, .. } => Some(format!("  skipped {id}: {reason}")),
        Event::Cooldown { model, seconds } => Some(format!("  {model} answered 429: pausing it for {seconds:.1}s")),
        Event::Waiting { model, until, reason } => Some(format!("  {model}: {reason}; waiting until {until}")),
        Event::Stopping { message, .. } => Some(format!("stopping: {message}")),
        Event::Note { message } => Some(format!("  {message}")),
        _ => None,
    }
}

/// `running 18 of 20 tasks (2 already done) with up to 16 in flight; estimate $1.0990`
fn opening_line(event: &Event) -> Option<String> {
    let Event::Started { total, to_run, already_done, estimate_usd, concurrency, .. } = event else { return None };
    Some(format!(
        "running {} of {} tasks ({} already done) with up to {concurrency} in flight; estimate {estimate_usd}",
        thousands(*to_run),
        thousands(*total),
        thousands(*already_done)
    ))
}

/// The run's outcome in the words of the progress line: `catalogue: 3 succeeded, 1 failed,
/// 4 without image, 15 already done in 12s`; counts that are zero are left out, and a run
/// where nothing ran says so (`nothing to run: 18 already done`).
pub fn outcome_line(name: &str, p: &Progress, already_done: u64, failed_before: u64) -> String {
    let pending = p.to_run.saturating_sub(p.finished());
    let mut parts: Vec<String> = [
        (p.succeeded, "succeeded"),
        (p.failed, "failed"),
        (p.no_image, "without image"),
        (p.skipped, "skipped"),
        (pending, "pending"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", thousands(*n)))
    .collect();
    let before: Vec<String> = [(already_done, "already done"), (failed_before, "failed in an earlier run")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{} {what}", thousands(*n)))
        .collect();
    if p.to_run == 0 {
        let before = if before.is_empty() { "no tasks".to_owned() } else { before.join(", ") };
        return format!("{name}: nothing to run: {before}");
    }
    parts.extend(before);
    format!("{name}: {} in {}", parts.join(", "), duration(p.elapsed))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Bars on a terminal.
pub struct TerminalSink {
    multi: MultiProgress,
    total: ProgressBar,
    jobs: Vec<ProgressBar>,
    verbose: bool,
}

impl TerminalSink {
    pub fn new(verbose: bool) -> TerminalSink {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {elapsed_precise} [{bar:32.cyan/blue}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        total.enable_steady_tick(Duration::from_millis(200));
        TerminalSink { multi, total, jobs: Vec::new(), verbose }
    }
}

impl EventSink for TerminalSink {
    fn emit(&mut self, event: &Event, p: &Progress) {
        match event {
            Event::Started { to_run, jobs, .. } => {
                // Above the bars, as the plain output has it first.
                if let Some(line) = opening_line(event) {
                    let _ = self.multi.println(line);
                }
                self.total.set_length(*to_run);
                if jobs.iter().filter(|(_, n)| *n > 0).count() > 1 {
                    let style = ProgressStyle::with_template("  {prefix:<16} [{bar:24.green/white}] {pos}/{len}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                    for (name, n) in jobs {
                        let bar = self.multi.add(ProgressBar::new(*n));
                        bar.set_style(style.clone());
                        bar.set_prefix(name.clone());
                        self.jobs.push(bar);
                    }
                }
            }
            Event::Finished { .. } => {
                self.total.finish_and_clear();
                for bar in &self.jobs {
                    bar.finish_and_clear();
                }
                return;
            }
            Event::AttemptStarted { .. } if !self.verbose => {}
            _ => {
                if let Some(line) = event_line(event) {
                    let _ = self.multi.println(line);
                } else if self.verbose
                    && let Ok(json) = serde_json::to_string(event)
                {
                    let _ = self.multi.println(json);
                }
            }
        }
        self.refresh(p);
    }

    fn tick(&mut self, p: &Progress) {
        self.refresh(p);
    }
}

impl TerminalSink {
    fn refresh(&mut self, p: &Progress) {
        self.total.set_position(p.finished());
        self.total.set_message(summary_line(p));
        for (bar, (_, done, _)) in self.jobs.iter().zip(&p.jobs) {
            bar.set_position(*done);
        }
    }
}

/// Plain lines for logs: notable events as they happen, a summary every `every`.
pub struct PlainSink {
    printer: Printer,
    every: Duration,
    last: Instant,
}

impl PlainSink {
    pub fn new(printer: Printer, every: Duration) -> PlainSink {
        PlainSink { printer, every, last: Instant::now() }
    }

    fn line(&self, p: &Progress) -> String {
        format!("[{}] {}/{} done · {}", duration(p.elapsed), p.finished(), p.to_run, summary_line(p))
    }
}

impl EventSink for PlainSink {
    fn emit(&mut self, event: &Event, p: &Progress) {
        match event {
            Event::Started { .. } => {
                if let Some(line) = opening_line(event) {
                    self.printer.note(&line);
                }
            }
            Event::Finished { .. } => self.printer.note(&self.line(p)),
            _ => {
                if let Some(line) = event_line(event) {
                    self.printer.note(&line);
                }
            }
        }
    }

    fn tick(&mut self, p: &Progress) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            self.printer.note(&self.line(p));
        }
    }
}

/// `--json`: one event per line on stdout, and a `progress` line every few seconds.
pub struct JsonSink {
    printer: Printer,
    last: Instant,
}

impl JsonSink {
    pub fn new(printer: Printer) -> JsonSink {
        JsonSink { printer, last: Instant::now() }
    }
}

impl EventSink for JsonSink {
    fn emit(&mut self, event: &Event, _: &Progress) {
        // The run's last event is written by `run` once the reports exist, with the totals
        // ([`finished_json`]).
        if matches!(event, Event::Finished { .. }) {
            return;
        }
        if let Ok(line) = serde_json::to_string(event) {
            self.printer.data(&line);
        }
    }

    fn tick(&mut self, p: &Progress) {
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            let value =
                serde_json::json!({"event": "progress", "progress": p, "elapsed_ms": p.elapsed.as_millis() as u64});
            self.printer.data(&value.to_string());
        }
    }
}

/// The totals of a run, in `--json`'s last event (`{"event": "finished", ...}`).
#[derive(Debug, Serialize)]
pub struct RunTotals<'a> {
    pub status: &'a str,
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub no_image: u64,
    pub skipped: u64,
    pub pending: u64,
    pub already_done: u64,
    pub failed_before: u64,
    pub spent_usd: Usd,
    pub possibly_billed_usd: Usd,
    pub possibly_billed_attempts: u64,
    pub retries: u64,
    pub elapsed_ms: u64,
    pub reports: &'a [String],
}

impl<'a> RunTotals<'a> {
    pub fn new(status: &'a str, p: &Progress, already_done: u64, failed_before: u64, reports: &'a [String]) -> Self {
        RunTotals {
            status,
            tasks: p.total,
            succeeded: p.succeeded,
            failed: p.failed,
            no_image: p.no_image,
            skipped: p.skipped,
            pending: p.to_run.saturating_sub(p.finished()),
            already_done,
            failed_before,
            spent_usd: p.spent_usd,
            possibly_billed_usd: p.possibly_billed_usd,
            possibly_billed_attempts: p.possibly_billed_attempts,
            retries: p.retries,
            elapsed_ms: p.elapsed.as_millis() as u64,
            reports,
        }
    }
}

/// `{"event":"finished","status":…,"totals":{…}}`
pub fn finished_json(totals: &RunTotals<'_>) -> String {
    serde_json::json!({"event": "finished", "status": totals.status, "totals": totals}).to_string()
}
