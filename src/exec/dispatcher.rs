//! The dispatcher: the single owner of run state and the single writer of the journal.
//!
//! It keeps a ready queue per model over the DAG, admits requests through each model's gate
//! (rate limit, cooldown, adaptive concurrency) and the budget, spawns units into a tracked
//! `JoinSet` (at most `-j` in flight), schedules retries on timers, and turns every unit result
//! into journal records (committed before anything depends on them), events and state changes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::batch::{BatchEvent, BatchLane, BatchMode, OpenJob, chunk, find_by_display_name, submit, watch};
use super::budget::{Admission, Ledger};
use super::cancel::Cancel;
use super::events::{Event, EventSink, Progress};
use super::limits::{Blocked, ModelGate};
use super::request::{ImageFile, PastTurn, UserTurn};
use super::retry::{FailureClass, RATE_LIMIT_ATTEMPTS, backoff, classify};
use super::unit::{self, UnitContext, UnitInput, UnitResult};
use super::{ExecError, ExecOptions, RunOutcome, StopReason};
use crate::catalog::{Tier, TokenCounts, Usd};
use crate::checkpoint::journal::JournalWriter;
use crate::checkpoint::records::{
    AttemptRecord, BatchFinished, BatchIntent, BatchSubmitted, EndRecord, ErrorRecord, OutputRecord, Record,
    SentRecord, TaskRecord, TaskStatus, now,
};
use crate::checkpoint::resume::{Decision, JournalState};
use crate::plan::{TaskIndex, TaskView};
use crate::redact::redact_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for this many dependencies.
    Pending(u32),
    Ready,
    Running,
    /// Waiting for a retry timer.
    Waiting,
    /// Queued for, or inside, a server-side batch job.
    InBatch,
    Done,
    Failed,
    NoImage,
    Skipped,
}

impl State {
    fn terminal_failure(self) -> bool {
        matches!(self, State::Failed | State::NoImage | State::Skipped)
    }
}

/// Where a finished task's outputs are, for the tasks that use them.
#[derive(Debug, Clone)]
struct Finished {
    image: PathBuf,
    mime: String,
    turn: Option<PathBuf>,
}

type UnitDone = (TaskIndex, u32, UnitResult, Duration);

pub(super) struct Dispatcher<'s> {
    ctx: Arc<UnitContext>,
    options: ExecOptions,
    sink: &'s mut dyn EventSink,
    journal: JournalWriter,
    cancel: Cancel,
    states: Vec<State>,
    dependents: Vec<Vec<TaskIndex>>,
    /// Outputs of finished tasks that others use (only those: a catalogue's 100,000 paths would
    /// be memory that grows with the run for nothing).
    finished: HashMap<TaskIndex, Finished>,
    /// Attempts counted against the retry policy (429s are counted apart).
    attempts: Vec<u32>,
    rate_attempts: Vec<u32>,
    slot_of: Vec<usize>,
    slot_models: Vec<String>,
    gates: Vec<ModelGate>,
    ready: Vec<VecDeque<TaskIndex>>,
    next_slot: usize,
    timers: BinaryHeap<Reverse<(Instant, TaskIndex)>>,
    gate_wake: Option<Instant>,
    inflight: JoinSet<UnitDone>,
    /// The budget: worst cases reserved by requests in flight, spend before this run.
    ledger: Ledger,
    /// Batch tasks wait in the lane's queue for reservations to settle (see `submit_job`).
    budget_deferred: bool,
    progress: Progress,
    job_names: Vec<String>,
    stop: Option<StopReason>,
    rng: StdRng,
    started: Instant,
    /// The Batch API lane (`--mode batch|auto`).
    lane: Option<BatchLane>,
    /// True while the initial state is built: in `auto` mode, the tasks ready then go to batch.
    initialising: bool,
}

impl<'s> Dispatcher<'s> {
    pub(super) fn new(
        ctx: Arc<UnitContext>,
        options: ExecOptions,
        decisions: &[Decision],
        journal_state: &JournalState,
        journal: JournalWriter,
        sink: &'s mut dyn EventSink,
        cancel: Cancel,
        batch: Option<super::BatchSetup>,
    ) -> Dispatcher<'s> {
        let plan = ctx.plan.clone();
        let n = plan.tasks.len();
        let mut slot_index: HashMap<String, usize> = HashMap::new();
        let mut slot_models = Vec::new();
        let mut slot_of = Vec::with_capacity(n);
        for task in &plan.tasks {
            let model = TaskView::new(&ctx.manifest, task).model.id.clone();
            let next = slot_index.len();
            let slot = *slot_index.entry(model.clone()).or_insert_with(|| {
                slot_models.push(model);
                next
            });
            slot_of.push(slot);
        }
        let gates =
            slot_models.iter().map(|m| ModelGate::new(options.rates.get(m).copied(), options.jobs.max(1))).collect();
        let job_names: Vec<String> = ctx.manifest.jobs.iter().map(|j| j.name.clone()).collect();
        let lane = batch.map(|b| {
            BatchLane::new(b.api, b.base_url, b.mode, b.limits, b.interactive_fallback, slot_models.len(), b.state_dir)
        });
        let mut d = Dispatcher {
            ctx,
            sink,
            journal,
            cancel,
            states: vec![State::Pending(0); n],
            dependents: plan.dependents(),
            finished: HashMap::new(),
            attempts: vec![0; n],
            rate_attempts: vec![0; n],
            slot_of,
            ready: vec![VecDeque::new(); slot_models.len()],
            slot_models,
            gates,
            next_slot: 0,
            timers: BinaryHeap::new(),
            gate_wake: None,
            inflight: JoinSet::new(),
            ledger: Ledger::new(options.max_cost, journal_state.spent, journal_state.possibly_billed),
            budget_deferred: false,
            progress: Progress { total: n as u64, ..Progress::default() },
            job_names,
            stop: None,
            rng: StdRng::seed_from_u64(0x6e62_u64 ^ n as u64),
            started: Instant::now(),
            options,
            lane,
            initialising: true,
        };
        d.initialise(decisions, journal_state);
        d.initialising = false;
        d
    }

    fn initialise(&mut self, decisions: &[Decision], journal_state: &JournalState) {
        let plan = self.ctx.plan.clone();
        let root = self.ctx.store.root().to_path_buf();
        let mut job_totals = vec![0u64; self.job_names.len()];
        let attached = self.reattach_batches(decisions, journal_state);
        for (i, task) in plan.tasks.iter().enumerate() {
            if attached.contains(&(i as TaskIndex)) {
                self.states[i] = State::InBatch;
                self.progress.to_run += 1;
                self.progress.in_flight += 1;
                job_totals[task.job as usize] += 1;
                continue;
            }
            match &decisions[i] {
                Decision::Done { record, .. } => {
                    self.states[i] = State::Done;
                    if let Some(r) = journal_state.latest.get(record)
                        && let Some(o) = r.outputs.first()
                    {
                        self.keep_outputs(
                            i as TaskIndex,
                            Finished {
                                image: root.join(&o.path),
                                mime: o.mime.clone(),
                                turn: r.turn.as_ref().map(|t| root.join(t)),
                            },
                        );
                    }
                }
                Decision::Failed { record } => {
                    let status = journal_state.latest.get(record).map(|r| r.status);
                    self.states[i] = if status == Some(TaskStatus::NoImage) { State::NoImage } else { State::Failed };
                }
                Decision::Run(_) => {
                    self.progress.to_run += 1;
                    job_totals[task.job as usize] += 1;
                    self.attempts[i] =
                        journal_state.open_attempts.get(&task.fingerprint.to_hex()).copied().unwrap_or(0);
                    let mut waiting = 0;
                    let mut blocked_by = None;
                    for dep in task.deps() {
                        match self.states[dep as usize] {
                            State::Done => {}
                            s if s.terminal_failure() => blocked_by = Some(dep),
                            _ => waiting += 1,
                        }
                    }
                    if let Some(dep) = blocked_by {
                        self.states[i] = State::Skipped;
                        self.progress.skipped += 1;
                        let _ = dep;
                    } else if waiting == 0 {
                        self.make_ready(i as TaskIndex, false);
                    } else {
                        self.states[i] = State::Pending(waiting);
                    }
                }
            }
        }
        // A finished conversation step whose turn file is gone cannot be continued: run it again.
        for i in 0..plan.tasks.len() {
            if self.states[i] == State::Done
                && self.ctx.keep_turn[i]
                && self.finished.get(&(i as TaskIndex)).is_none_or(|f| f.turn.as_ref().is_none_or(|t| !t.exists()))
                && self.dependents[i].iter().any(|d| !matches!(self.states[*d as usize], State::Done))
            {
                self.states[i] = State::Ready;
                self.progress.to_run += 1;
                job_totals[plan.tasks[i].job as usize] += 1;
                let slot = self.slot_of[i];
                self.ready[slot].push_back(i as TaskIndex);
                for &d in &self.dependents[i].clone() {
                    if let State::Ready = self.states[d as usize] {
                        self.ready[self.slot_of[d as usize]].retain(|t| *t != d);
                        self.states[d as usize] = State::Pending(1);
                    } else if let State::Pending(n) = self.states[d as usize] {
                        self.states[d as usize] = State::Pending(n + 1);
                    }
                }
            }
        }
        self.progress.jobs = self.job_names.iter().cloned().zip(job_totals).map(|(n, t)| (n, 0, t)).collect();
    }

    fn make_ready(&mut self, i: TaskIndex, front: bool) {
        if self.goes_to_batch() {
            self.queue_for_batch(i);
            return;
        }
        self.states[i as usize] = State::Ready;
        let slot = self.slot_of[i as usize];
        if front {
            self.ready[slot].push_front(i);
        } else {
            self.ready[slot].push_back(i);
        }
    }

    fn estimate(&self, i: TaskIndex) -> Usd {
        let task = &self.ctx.plan.tasks[i as usize];
        TaskView::new(&self.ctx.manifest, task).model.cost(&task.estimate, self.ctx.tier)
    }

    /// The most the request of `i` can cost at `tier`: what the budget reserves for it.
    fn worst_case(&self, i: TaskIndex, tier: Tier) -> Usd {
        let task = &self.ctx.plan.tasks[i as usize];
        let view = TaskView::new(&self.ctx.manifest, task);
        let worst = self.ledger.worst_tokens(self.slot_of[i as usize], &task.estimate, output_bound(&view));
        view.model.cost(&worst, tier)
    }

    /// Spent and possibly billed by this run.
    fn this_run(&self) -> Usd {
        self.progress.spent_usd + self.progress.possibly_billed_usd
    }

    /// Stops the run for the budget, with the figures as they stand.
    fn stop_for_budget(&mut self, next: Usd) {
        if let Some(figures) = self.ledger.figures(self.progress.spent_usd, self.progress.possibly_billed_usd, next) {
            self.set_stop(StopReason::Budget(figures));
        }
    }

    /// A request left the run (answered, failed, or out of a batch job): its reservation is
    /// freed, and batch tasks the budget held back may be grouped again.
    fn release_reservation(&mut self, i: TaskIndex) {
        if self.ledger.release(i) && self.budget_deferred {
            self.budget_deferred = false;
            if let Some(lane) = &mut self.lane
                && lane.queued() > 0
            {
                lane.queued_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Learns the worst case from an answer's usage; says so when the server billed beyond the
    /// model's output limit (the budget then reserves as much for this model).
    fn observe_usage(&mut self, i: TaskIndex, usage: &TokenCounts) {
        let task = &self.ctx.plan.tasks[i as usize];
        let view = TaskView::new(&self.ctx.manifest, task);
        let bound = output_bound(&view);
        let slot = self.slot_of[i as usize];
        if let Some(excess) = self.ledger.observe(slot, usage, task.estimate.output_image, bound) {
            let message = format!(
                "an answer of {} carried {} text and thinking tokens, beyond the model's output limit of {bound}; the budget reserves {excess} more per request of this model from now on",
                view.model.id,
                usage.output_text + usage.thinking,
            );
            self.emit(&Event::Note { message });
        }
    }

    pub(super) async fn run(mut self) -> Result<RunOutcome, ExecError> {
        let all_batch = self.lane.as_ref().is_some_and(|l| l.mode == BatchMode::All);
        let estimate: Usd = (0..self.states.len() as TaskIndex)
            .map(|i| match self.states[i as usize] {
                State::InBatch => self.batch_estimate(i),
                State::Ready | State::Pending(_) if all_batch => self.batch_estimate(i),
                State::Ready | State::Pending(_) => self.estimate(i),
                _ => Usd::ZERO,
            })
            .sum();
        let started = Event::Started {
            total: self.progress.total,
            to_run: self.progress.to_run,
            already_done: self.states.iter().filter(|s| **s == State::Done).count() as u64,
            already_failed: self.states.iter().filter(|s| matches!(s, State::Failed | State::NoImage)).count() as u64,
            estimate_usd: estimate,
            jobs: self.progress.jobs.iter().map(|(n, _, t)| (n.clone(), *t)).collect(),
            concurrency: self.options.jobs,
        };
        self.emit(&started);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let cancel = self.cancel.clone();
        loop {
            let now = Instant::now();
            self.fire_timers(now);
            if self.stop.is_none() {
                self.dispatch(now)?;
                self.flush_batches(now)?;
            }
            let lane_waits =
                self.lane.as_ref().is_some_and(|l| !l.is_idle()) && self.stop != Some(StopReason::Interrupted);
            if self.inflight.is_empty() && !lane_waits && (self.stop.is_some() || !self.has_work()) {
                break;
            }
            let wake = self.next_wake();
            let lane_busy = self.lane.as_ref().is_some_and(|l| !l.ops.is_empty());
            tokio::select! {
                biased;
                _ = cancel.aborted() => {
                    self.inflight.abort_all();
                    self.journal.append(&Record::End(EndRecord { at: now_string(), status: "aborted".into() }));
                    let _ = self.journal.commit();
                    return Err(ExecError::Aborted);
                }
                _ = cancel.stopped(), if self.stop.is_none() => {
                    self.set_stop(StopReason::Interrupted);
                }
                Some(joined) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    self.on_joined(joined)?;
                    while let Some(more) = self.inflight.try_join_next() {
                        self.on_joined(more)?;
                    }
                    self.journal.commit().map_err(ExecError::Journal)?;
                }
                Some(event) = lane_next(&mut self.lane), if lane_busy => {
                    self.on_batch_event(event)?;
                    self.journal.commit().map_err(ExecError::Journal)?;
                }
                _ = sleep_until_opt(wake), if wake.is_some() => {}
                _ = tick.tick() => {
                    self.progress.elapsed = self.started.elapsed();
                    self.sink.tick(&self.progress);
                }
            }
        }
        self.leave_batches_running();
        // A budget stop is reported with the figures at the end (batch jobs in flight when it
        // stopped have settled since).
        if let Some(StopReason::Budget(figures)) = &self.stop
            && let Some(now) =
                self.ledger.figures(self.progress.spent_usd, self.progress.possibly_billed_usd, figures.next_usd)
        {
            self.stop = Some(StopReason::Budget(now));
        }
        let status = match &self.stop {
            None => "completed",
            Some(s) => s.label(),
        };
        self.journal.append(&Record::End(EndRecord { at: now_string(), status: status.into() }));
        self.journal.commit().map_err(ExecError::Journal)?;
        self.progress.elapsed = self.started.elapsed();
        self.emit(&Event::Finished { status });
        Ok(RunOutcome { stop: self.stop.take(), progress: self.progress.clone() })
    }

    fn has_work(&self) -> bool {
        !self.timers.is_empty() || self.ready.iter().any(|q| !q.is_empty())
    }

    fn next_wake(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let flush = if self.stop.is_none() { self.lane.as_ref().and_then(BatchLane::flush_at) } else { None };
        [timer, self.gate_wake, flush].into_iter().flatten().min()
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.states[i as usize] == State::Waiting {
                self.make_ready(i, true);
            }
        }
    }

    /// Starts as many tasks as the limits allow, round-robin over models. Each request is
    /// journaled as sent (and the journal synced) before it leaves.
    fn dispatch(&mut self, now: Instant) -> Result<(), ExecError> {
        self.gate_wake = None;
        let slots = self.ready.len();
        if slots == 0 {
            return Ok(());
        }
        let mut starts: Vec<(TaskIndex, Usd)> = Vec::new();
        'fill: loop {
            let mut started_any = false;
            for k in 0..slots {
                if self.inflight.len() + starts.len() >= self.options.jobs {
                    break 'fill;
                }
                let slot = (self.next_slot + k) % slots;
                let Some(&task) = self.ready[slot].front() else { continue };
                // The budget first: a request that must wait for others to settle takes no
                // rate-limit token.
                let worst = self.worst_case(task, self.ctx.tier);
                match self.ledger.admit(self.this_run(), worst) {
                    Admission::Go => {}
                    Admission::Wait => continue,
                    Admission::Stop => {
                        self.stop_for_budget(worst);
                        break 'fill;
                    }
                }
                match self.gates[slot].try_acquire(now) {
                    Ok(()) => {
                        let cost = self.estimate(task);
                        self.ready[slot].pop_front();
                        // Reserve now so that the next admission sees this request's worst case.
                        self.ledger.reserve(task, worst);
                        starts.push((task, cost));
                        started_any = true;
                        self.next_slot = (slot + 1) % slots;
                    }
                    Err(Blocked::Until(t)) => {
                        self.gate_wake = Some(self.gate_wake.map_or(t, |w| w.min(t)));
                    }
                    Err(Blocked::Busy) => {}
                }
            }
            if !started_any {
                break;
            }
        }
        if starts.is_empty() {
            return Ok(());
        }
        for &(task, cost) in &starts {
            let t = &self.ctx.plan.tasks[task as usize];
            let n = self.attempts[task as usize] + self.rate_attempts[task as usize] + 1;
            self.journal.append(&Record::Sent(SentRecord {
                id: t.id.to_string(),
                fp: t.fingerprint.to_hex(),
                n,
                estimate_usd: cost,
                at: now_string(),
            }));
        }
        self.journal.commit().map_err(ExecError::Journal)?;
        for (task, _) in starts {
            self.spawn(task);
        }
        Ok(())
    }

    fn spawn(&mut self, i: TaskIndex) {
        let attempt = self.attempts[i as usize] + self.rate_attempts[i as usize] + 1;
        let input = UnitInput { index: i, attempt, past: self.past_turns(i), images: self.upstream_images(i) };
        self.states[i as usize] = State::Running;
        self.progress.in_flight += 1;
        let ctx = self.ctx.clone();
        self.inflight.spawn(async move {
            let (result, latency) = unit::run(ctx, input).await;
            (i, attempt, result, latency)
        });
        let (id, job) = self.names(i);
        self.emit(&Event::AttemptStarted { id, job, attempt });
    }

    fn names(&self, i: TaskIndex) -> (String, String) {
        let task = &self.ctx.plan.tasks[i as usize];
        (task.id.to_string(), self.job_names[task.job as usize].clone())
    }

    /// Remembers where a finished task's outputs are, if another task uses them.
    fn keep_outputs(&mut self, i: TaskIndex, outputs: Finished) {
        if !self.dependents[i as usize].is_empty() {
            self.finished.insert(i, outputs);
        }
    }

    fn upstream_images(&self, i: TaskIndex) -> Vec<(ImageFile, String)> {
        let task = &self.ctx.plan.tasks[i as usize];
        task.from
            .iter()
            .filter_map(|(dep, _)| {
                let f = self.finished.get(dep)?;
                Some((
                    ImageFile { path: f.image.clone(), mime: f.mime.clone() },
                    self.ctx.plan.tasks[*dep as usize].id.to_string(),
                ))
            })
            .collect()
    }

    /// The conversation so far, oldest turn first.
    fn past_turns(&self, i: TaskIndex) -> Vec<PastTurn> {
        let plan = &self.ctx.plan;
        let mut chain = Vec::new();
        let mut current = plan.tasks[i as usize].history;
        while let Some(h) = current {
            chain.push(h);
            current = plan.tasks[h as usize].history;
        }
        chain.reverse();
        chain
            .into_iter()
            .filter_map(|h| {
                let task = &plan.tasks[h as usize];
                let turn = self.finished.get(&h)?.turn.clone()?;
                Some(PastTurn {
                    user: UserTurn {
                        prompt: task.prompt_text.clone(),
                        refs: task.refs.clone(),
                        images: self.upstream_images(h).into_iter().map(|(f, _)| f).collect(),
                    },
                    model_turn: turn,
                })
            })
            .collect()
    }

    fn on_joined(&mut self, joined: Result<UnitDone, tokio::task::JoinError>) -> Result<(), ExecError> {
        let (i, attempt, result, latency) = match joined {
            Ok(done) => done,
            // A unit panicked: a bug, not a billing event; treat as unknown outcome of that task.
            Err(e) => return Err(ExecError::Internal(format!("a request task failed: {e}"))),
        };
        let slot = self.slot_of[i as usize];
        self.gates[slot].release();
        self.on_unit_result(i, attempt, result, latency.as_millis() as u64);
        Ok(())
    }

    /// A finished attempt (an interactive response or one line of a batch's results).
    fn on_unit_result(&mut self, i: TaskIndex, attempt: u32, result: UnitResult, latency_ms: u64) {
        self.release_reservation(i);
        self.progress.in_flight = self.progress.in_flight.saturating_sub(1);
        match &result {
            UnitResult::Image(done) => self.observe_usage(i, &done.usage),
            UnitResult::NoImage(done) | UnitResult::Broken(done) => self.observe_usage(i, &done.usage),
            UnitResult::Store { usage, .. } => self.observe_usage(i, usage),
            UnitResult::Failed { .. } | UnitResult::Input(_) | UnitResult::Fetch(_) => {}
        }
        match result {
            UnitResult::Image(done) => self.on_image(i, attempt, *done, latency_ms),
            UnitResult::NoImage(done) => self.on_no_image(i, attempt, *done, latency_ms),
            UnitResult::Broken(done) => self.on_broken_image(i, attempt, *done, latency_ms),
            UnitResult::Fetch(fetch) => {
                // A unit finishes its downloads; one that comes back is a bug, not a bill.
                let error = crate::api::ApiError::Malformed(format!("the image at {} was not downloaded", fetch.uri));
                self.on_failure(i, attempt, FailureClass::Unknown, &error, latency_ms);
            }
            UnitResult::Failed { class, error } => self.on_failure(i, attempt, class, &error, latency_ms),
            UnitResult::Input(message) => {
                let record = self.task_record(i, TaskStatus::Failed, attempt, latency_ms, self.ctx.tier);
                let record = TaskRecord {
                    error: Some(ErrorRecord { class: "input_missing".into(), message: message.clone(), http: None }),
                    ..record
                };
                self.finish_failed(i, record, State::Failed, message);
            }
            UnitResult::Store { error, usage, cost } => {
                self.progress.spent_usd += cost;
                self.progress.tokens.add(&usage);
                let (id, _) = self.names(i);
                let fp = self.ctx.plan.tasks[i as usize].fingerprint.to_hex();
                self.journal.append(&Record::attempt(AttemptRecord {
                    id,
                    fp,
                    n: attempt,
                    class: "store_failed".into(),
                    http: None,
                    message: error.to_string(),
                    possibly_billed_usd: Usd::ZERO,
                    billed_usd: cost,
                    usage: Some(usage),
                    retry_in_ms: None,
                    latency_ms,
                    at: now_string(),
                }));
                self.states[i as usize] = State::Ready;
                self.set_stop(StopReason::Fatal(store_message(&error)));
            }
        }
    }

    fn on_image(&mut self, i: TaskIndex, attempt: u32, mut done: unit::ImageDone, latency_ms: u64) {
        // The image this one replaced was moved aside, durably, before it landed.
        if let Some(moved) = done.written.superseded.take() {
            self.journal.append(&Record::Superseded(moved));
            self.progress.superseded += 1;
        }
        let slot = self.slot_of[i as usize];
        self.gates[slot].on_success();
        self.progress.spent_usd += done.cost;
        self.progress.tokens.add(&done.usage);
        let strict_failure = self.options.strict && done.size_mismatch.is_some();
        let status = if strict_failure { TaskStatus::Failed } else { TaskStatus::Succeeded };
        let base = self.task_record(i, status, attempt, latency_ms, done.tier);
        let plan = self.ctx.plan.clone();
        let task = &plan.tasks[i as usize];
        let record = TaskRecord {
            outputs: vec![OutputRecord {
                path: done.written.path.clone(),
                sidecar: done.written.sidecar.clone(),
                blake3: done.blake3.clone(),
                sha256: String::new(),
                bytes: done.written.bytes,
                mtime_ns: done.written.mtime_ns,
                mime: done.mime.to_owned(),
                width: done.width,
                height: done.height,
            }],
            turn: done.turn.clone(),
            usage: done.usage,
            cost_usd: done.cost,
            finish_reason: done.finish_reason.clone(),
            model_version: done.model_version.clone(),
            response_id: done.response_id.clone(),
            text: done.text.clone(),
            size_mismatch: done.size_mismatch,
            grounding: done.grounding.clone(),
            usage_reported: done.implausible_usage,
            error: strict_failure.then(|| ErrorRecord {
                class: "size_mismatch".into(),
                message: format!(
                    "image is {}x{}, expected {}x{}",
                    done.width, done.height, task.pixels.0, task.pixels.1
                ),
                http: None,
            }),
            ..base
        };
        self.journal.append(&Record::task(record));
        if strict_failure {
            self.states[i as usize] = State::Failed;
            self.progress.failed += 1;
            self.bump_job(i);
            let message = format!(
                "image is {}x{}, expected {}x{} (--strict)",
                done.width, done.height, task.pixels.0, task.pixels.1
            );
            self.emit_finished(
                i,
                "failed",
                attempt,
                done.cost,
                done.usage,
                Some(done.written.path.clone()),
                Some(message.clone()),
            );
            self.skip_dependents(i, &message);
            self.check_fail_fast(i);
            return;
        }
        let root = self.ctx.store.root().to_path_buf();
        self.keep_outputs(
            i,
            Finished {
                image: root.join(&done.written.path),
                mime: done.mime.to_owned(),
                turn: done.turn.as_ref().map(|t| root.join(t)),
            },
        );
        self.states[i as usize] = State::Done;
        self.progress.succeeded += 1;
        self.bump_job(i);
        let size_note = done
            .size_mismatch
            .map(|(w, h)| format!("size {w}x{h} differs from the catalogue's {}x{}", task.pixels.0, task.pixels.1));
        let usage_note = done.implausible_usage.map(|reported| implausible_usage_note(&reported, done.cost));
        let note = match (size_note, usage_note) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        self.emit_finished(i, "succeeded", attempt, done.cost, done.usage, Some(done.written.path), note);
        for d in self.dependents[i as usize].clone() {
            if let State::Pending(n) = self.states[d as usize] {
                if n <= 1 {
                    self.make_ready(d, false);
                } else {
                    self.states[d as usize] = State::Pending(n - 1);
                }
            }
        }
    }

    fn on_no_image(&mut self, i: TaskIndex, attempt: u32, done: unit::NoImageDone, latency_ms: u64) {
        self.progress.spent_usd += done.cost;
        self.progress.tokens.add(&done.usage);
        self.attempts[i as usize] += 1;
        let policy = &self.options.retry;
        if policy.on_no_image && self.attempts[i as usize] < policy.attempts && self.stop.is_none() {
            let delay = backoff(policy, self.attempts[i as usize], None, &mut self.rng);
            let record =
                self.attempt_record(i, attempt, "no_image", None, &done.reason, Usd::ZERO, latency_ms, Some(delay));
            self.journal.append(&Record::attempt(AttemptRecord {
                billed_usd: done.cost,
                usage: Some(done.usage),
                ..record
            }));
            self.schedule_retry(i, attempt, "no_image", done.reason.clone(), delay, false);
            return;
        }
        let base = self.task_record(i, TaskStatus::NoImage, attempt, latency_ms, done.tier);
        let message = match &done.message {
            Some(m) => format!("{}: {m}", done.reason),
            None => done.reason.clone(),
        };
        let record = TaskRecord {
            usage: done.usage,
            cost_usd: done.cost,
            finish_reason: done.finish_reason.clone(),
            model_version: done.model_version.clone(),
            response_id: done.response_id.clone(),
            text: done.text.clone(),
            usage_reported: done.implausible_usage,
            error: Some(ErrorRecord { class: "no_image".into(), message: message.clone(), http: Some(200) }),
            ..base
        };
        self.journal.append(&Record::task(record));
        self.states[i as usize] = State::NoImage;
        self.progress.no_image += 1;
        self.bump_job(i);
        let shown = match &done.text {
            Some(t) => format!("{message} — model said: {}", t.chars().take(160).collect::<String>()),
            None => message,
        };
        self.emit_finished(i, "no_image", attempt, done.cost, done.usage, None, Some(shown.clone()));
        self.skip_dependents(i, &shown);
        self.check_fail_fast(i);
    }

    /// A 200 whose image is not whole: billed (at its reported usage, or possibly at the
    /// estimate when it reported none), and retried while attempts are left, whatever
    /// `on_no_image` says (a gateway broke it, not the model).
    fn on_broken_image(&mut self, i: TaskIndex, attempt: u32, done: unit::NoImageDone, latency_ms: u64) {
        const CLASS: &str = "broken_image";
        self.progress.spent_usd += done.cost;
        self.progress.tokens.add(&done.usage);
        let possibly = if done.usage_missing { self.estimate(i) } else { Usd::ZERO };
        if !possibly.is_zero() {
            self.progress.possibly_billed_usd += possibly;
            self.progress.possibly_billed_attempts += 1;
        }
        self.attempts[i as usize] += 1;
        let retry = self.attempts[i as usize] < self.options.retry.attempts;
        let delay = backoff(&self.options.retry, self.attempts[i as usize], None, &mut self.rng);
        let planned = if retry { self.planned_retry(delay) } else { None };
        let record = self.attempt_record(i, attempt, CLASS, Some(200), &done.reason, possibly, latency_ms, planned);
        self.journal.append(&Record::attempt(AttemptRecord {
            billed_usd: done.cost,
            usage: Some(done.usage),
            ..record
        }));
        if retry {
            self.schedule_retry(i, attempt, CLASS, done.reason, delay, !possibly.is_zero());
            return;
        }
        let base = self.task_record(i, TaskStatus::Failed, attempt, latency_ms, done.tier);
        let record = TaskRecord {
            error: Some(ErrorRecord { class: CLASS.into(), message: done.reason.clone(), http: Some(200) }),
            ..base
        };
        self.finish_failed(i, record, State::Failed, format!("{CLASS}: {}", done.reason));
    }

    fn on_failure(
        &mut self,
        i: TaskIndex,
        attempt: u32,
        class: FailureClass,
        error: &crate::api::ApiError,
        latency_ms: u64,
    ) {
        let message = redact_text(&error.to_string());
        let http = error.http_status();
        let now = Instant::now();
        let possibly = if class.possibly_billed() { self.estimate(i) } else { Usd::ZERO };
        if class.possibly_billed() {
            self.progress.possibly_billed_usd += possibly;
            self.progress.possibly_billed_attempts += 1;
        }
        let policy = self.options.retry.clone();
        match class {
            FailureClass::RateLimited => {
                self.rate_attempts[i as usize] += 1;
                let delay = error.server_delay().unwrap_or_else(|| {
                    backoff(&policy, self.rate_attempts[i as usize], None, &mut self.rng).max(Duration::from_secs(1))
                });
                let slot = self.slot_of[i as usize];
                self.gates[slot].on_rate_limited(now, delay);
                self.emit(&Event::Cooldown { model: self.slot_models[slot].clone(), seconds: delay.as_secs_f64() });
                if self.rate_attempts[i as usize] <= RATE_LIMIT_ATTEMPTS {
                    let record = self.attempt_record(
                        i,
                        attempt,
                        class.name(),
                        http,
                        &message,
                        possibly,
                        latency_ms,
                        self.planned_retry(delay),
                    );
                    self.journal.append(&Record::attempt(record));
                    self.schedule_retry(i, attempt, class.name(), message, delay, false);
                    return;
                }
            }
            FailureClass::DailyQuota => {
                let record = self.attempt_record(i, attempt, class.name(), http, &message, possibly, latency_ms, None);
                self.journal.append(&Record::attempt(record));
                let slot = self.slot_of[i as usize];
                let model = self.slot_models[slot].clone();
                if self.options.wait_for_quota {
                    let (until, label) = next_pacific_midnight();
                    self.gates[slot].on_rate_limited(now, until);
                    self.emit(&Event::Waiting { model, until: label, reason: "daily quota exhausted".into() });
                    self.make_ready(i, true);
                } else {
                    self.make_ready(i, true);
                    self.set_stop(StopReason::DailyQuota { model, message });
                }
                return;
            }
            FailureClass::Auth => {
                let record = self.attempt_record(i, attempt, class.name(), http, &message, possibly, latency_ms, None);
                self.journal.append(&Record::attempt(record));
                self.make_ready(i, true);
                self.set_stop(StopReason::Fatal(format!(
                    "the API rejected the key ({message}); check GEMINI_API_KEY / GOOGLE_API_KEY"
                )));
                return;
            }
            _ => {}
        }
        if class != FailureClass::RateLimited {
            self.attempts[i as usize] += 1;
        }
        let attempts_left = self.attempts[i as usize] < policy.attempts;
        if class.retryable(&policy) && attempts_left && class != FailureClass::RateLimited {
            let delay = backoff(&policy, self.attempts[i as usize], error.server_delay(), &mut self.rng);
            let record = self.attempt_record(
                i,
                attempt,
                class.name(),
                http,
                &message,
                possibly,
                latency_ms,
                self.planned_retry(delay),
            );
            self.journal.append(&Record::attempt(record));
            self.schedule_retry(i, attempt, class.name(), message, delay, class.possibly_billed());
            return;
        }
        // Terminal.
        if class.possibly_billed() {
            let record = self.attempt_record(i, attempt, class.name(), http, &message, possibly, latency_ms, None);
            self.journal.append(&Record::attempt(record));
        }
        let base = self.task_record(i, TaskStatus::Failed, attempt, latency_ms, self.ctx.tier);
        let record = TaskRecord {
            error: Some(ErrorRecord { class: class.name().into(), message: message.clone(), http }),
            ..base
        };
        let shown = match http {
            Some(h) if !message.starts_with(&format!("HTTP {h}")) => format!("{} (HTTP {h}): {message}", class.name()),
            _ => format!("{}: {message}", class.name()),
        };
        self.finish_failed(i, record, State::Failed, shown);
    }

    fn finish_failed(&mut self, i: TaskIndex, record: TaskRecord, state: State, message: String) {
        let attempts = record.attempts;
        self.journal.append(&Record::task(record));
        self.states[i as usize] = state;
        self.progress.failed += 1;
        self.bump_job(i);
        self.emit_finished(i, "failed", attempts, Usd::ZERO, TokenCounts::default(), None, Some(message.clone()));
        self.skip_dependents(i, &message);
        self.check_fail_fast(i);
    }

    fn schedule_retry(
        &mut self,
        i: TaskIndex,
        attempt: u32,
        class: &'static str,
        message: String,
        delay: Duration,
        possibly_billed: bool,
    ) {
        let retry_in = self.planned_retry(delay);
        if retry_in.is_some() {
            self.progress.retries += 1;
            self.states[i as usize] = State::Waiting;
            self.timers.push(Reverse((Instant::now() + delay, i)));
        } else {
            // Stopping: nothing more is sent in this run; the task waits for the next one.
            self.states[i as usize] = State::Ready;
        }
        let (id, job) = self.names(i);
        let counted = self.attempts[i as usize];
        self.emit(&Event::AttemptFailed {
            id,
            job,
            attempt,
            counted,
            class,
            message,
            retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
            possibly_billed,
        });
    }

    /// The delay of a retry this run will make: none once it is stopping (a retry that will not
    /// be sent is not announced, nor journaled as planned).
    fn planned_retry(&self, delay: Duration) -> Option<Duration> {
        self.stop.is_none().then_some(delay)
    }

    fn check_fail_fast(&mut self, i: TaskIndex) {
        if self.options.fail_fast && self.stop.is_none() {
            let (id, _) = self.names(i);
            self.set_stop(StopReason::FailFast { id });
        }
    }

    /// Marks every task downstream of `i` as skipped.
    fn skip_dependents(&mut self, i: TaskIndex, why: &str) {
        let (upstream, _) = self.names(i);
        let mut stack: Vec<TaskIndex> = self.dependents[i as usize].clone();
        while let Some(d) = stack.pop() {
            let state = self.states[d as usize];
            if matches!(state, State::Pending(_) | State::Ready | State::Waiting) {
                if state == State::Ready {
                    let slot = self.slot_of[d as usize];
                    self.ready[slot].retain(|t| *t != d);
                }
                self.states[d as usize] = State::Skipped;
                self.progress.skipped += 1;
                self.bump_job(d);
                let (id, job) = self.names(d);
                let reason = format!("upstream task `{upstream}` did not produce an image ({})", first_line(why));
                self.emit(&Event::TaskSkipped { id, job, reason });
                stack.extend(self.dependents[d as usize].iter().copied());
            }
        }
    }

    fn bump_job(&mut self, i: TaskIndex) {
        let job = self.ctx.plan.tasks[i as usize].job as usize;
        if let Some(entry) = self.progress.jobs.get_mut(job) {
            entry.1 += 1;
        }
    }

    fn set_stop(&mut self, reason: StopReason) {
        if self.stop.is_some() {
            return;
        }
        let message = reason.to_string();
        let budget = match &reason {
            StopReason::Budget(figures) => Some(figures.clone()),
            _ => None,
        };
        self.emit(&Event::Stopping { reason: reason.label(), message, budget });
        self.stop = Some(reason);
    }

    fn task_record(&self, i: TaskIndex, status: TaskStatus, attempt: u32, latency_ms: u64, tier: Tier) -> TaskRecord {
        let task = &self.ctx.plan.tasks[i as usize];
        TaskRecord {
            id: task.id.to_string(),
            fp: task.fingerprint.to_hex(),
            parts: task.parts.to_hex(),
            status,
            attempts: attempt,
            outputs: Vec::new(),
            turn: None,
            usage: TokenCounts::default(),
            cost_usd: Usd::ZERO,
            tier,
            finish_reason: None,
            error: None,
            model_version: None,
            response_id: None,
            text: None,
            size_mismatch: None,
            usage_reported: None,
            grounding: Vec::new(),
            latency_ms,
            at: now_string(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_record(
        &self,
        i: TaskIndex,
        attempt: u32,
        class: &str,
        http: Option<u16>,
        message: &str,
        possibly_billed: Usd,
        latency_ms: u64,
        retry_in: Option<Duration>,
    ) -> AttemptRecord {
        let task = &self.ctx.plan.tasks[i as usize];
        AttemptRecord {
            id: task.id.to_string(),
            fp: task.fingerprint.to_hex(),
            n: attempt,
            class: class.to_owned(),
            http,
            message: message.to_owned(),
            possibly_billed_usd: possibly_billed,
            billed_usd: Usd::ZERO,
            usage: None,
            retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
            latency_ms,
            at: now_string(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_finished(
        &mut self,
        i: TaskIndex,
        status: &'static str,
        attempts: u32,
        cost: Usd,
        tokens: TokenCounts,
        output: Option<String>,
        message: Option<String>,
    ) {
        let (id, job) = self.names(i);
        self.emit(&Event::TaskFinished { id, job, status, attempts, cost_usd: cost, tokens, output, message });
    }

    fn emit(&mut self, event: &Event) {
        self.progress.elapsed = self.started.elapsed();
        self.sink.emit(event, &self.progress);
    }
}

impl Dispatcher<'_> {
    /// Whether a task that just became ready goes to the Batch API.
    fn goes_to_batch(&self) -> bool {
        match &self.lane {
            None => false,
            Some(lane) => match lane.mode {
                BatchMode::All => true,
                BatchMode::FirstWave => self.initialising,
            },
        }
    }

    fn queue_for_batch(&mut self, i: TaskIndex) {
        let slot = self.slot_of[i as usize];
        self.states[i as usize] = State::InBatch;
        self.progress.in_flight += 1;
        if let Some(lane) = &mut self.lane {
            lane.queue[slot].push(i);
            lane.queued_since.get_or_insert_with(Instant::now);
        }
    }

    /// Jobs submitted (or about to be) by an earlier run: watch them instead of submitting
    /// again. Returns the tasks they hold.
    fn reattach_batches(
        &mut self,
        decisions: &[Decision],
        journal_state: &JournalState,
    ) -> std::collections::HashSet<TaskIndex> {
        let mut attached = std::collections::HashSet::new();
        let Some(lane) = &self.lane else { return attached };
        let index = self.ctx.plan.index_by_id();
        let fps: HashMap<TaskIndex, String> = HashMap::new();
        let _ = fps;
        let mut open: Vec<(String, String, Option<String>, Vec<TaskIndex>)> = Vec::new();
        let pick = |ids: &[String], job_fps: &[String]| -> Vec<TaskIndex> {
            ids.iter()
                .enumerate()
                .filter_map(|(k, id)| {
                    let t = *index.get(id.as_str())?;
                    let fp_ok =
                        job_fps.get(k).is_none_or(|fp| *fp == self.ctx.plan.tasks[t as usize].fingerprint.to_hex());
                    (fp_ok && decisions[t as usize].must_run()).then_some(t)
                })
                .collect()
        };
        for b in journal_state.open_batches() {
            open.push((b.display_name.clone(), b.model.clone(), Some(b.name.clone()), pick(&b.ids, &b.fps)));
        }
        for intent in journal_state.batch_intents.values() {
            open.push((intent.display_name.clone(), intent.model.clone(), None, pick(&intent.ids, &intent.fps)));
        }
        let api = lane.api.clone();
        let limits = lane.limits;
        let state_dir = lane.state_dir.clone();
        let mut jobs = Vec::new();
        for (display, model, name, tasks) in open {
            let tasks: Vec<(TaskIndex, u32)> = tasks.into_iter().map(|t| (t, self.attempts[t as usize] + 1)).collect();
            attached.extend(tasks.iter().map(|(t, _)| *t));
            jobs.push((display, model, name, tasks));
        }
        for (display, model, name, tasks) in jobs {
            let note = match &name {
                Some(n) => format!("reattaching to server-side batch job {n} ({} tasks)", tasks.len()),
                None => format!("looking up batch job {display}, created just before the last run stopped"),
            };
            self.emit(&Event::Note { message: note });
            let inputs: Vec<UnitInput> = tasks.iter().map(|(t, a)| self.unit_input(*t, *a)).collect();
            let Some(lane) = &mut self.lane else { break };
            match &name {
                Some(n) => {
                    lane.ops.spawn(watch(
                        self.ctx.clone(),
                        api.clone(),
                        display.clone(),
                        n.clone(),
                        inputs,
                        limits,
                        state_dir.clone(),
                    ));
                }
                None => {
                    lane.ops.spawn(find_by_display_name(api.clone(), display.clone()));
                }
            }
            lane.open.insert(display, OpenJob { model, name, tasks });
        }
        attached
    }

    fn unit_input(&self, i: TaskIndex, attempt: u32) -> UnitInput {
        UnitInput { index: i, attempt, past: self.past_turns(i), images: self.upstream_images(i) }
    }

    /// Groups queued tasks into jobs and submits them (after a short wait that gathers a round).
    fn flush_batches(&mut self, now: Instant) -> Result<(), ExecError> {
        let Some(lane) = &self.lane else { return Ok(()) };
        if self.budget_deferred || (lane.flush_at().is_none_or(|t| t > now) && lane.queued() < lane.limits.max_requests)
        {
            return Ok(());
        }
        let queues: Vec<(usize, Vec<TaskIndex>)> = match &mut self.lane {
            Some(lane) => {
                lane.queued_since = None;
                lane.queue
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(slot, q)| (slot, std::mem::take(q)))
                    .collect()
            }
            None => return Ok(()),
        };
        let limits = self.lane.as_ref().map(|l| l.limits).unwrap_or_default();
        let jobs: Vec<(usize, Vec<TaskIndex>)> = queues
            .into_iter()
            .flat_map(|(slot, tasks)| chunk(&self.ctx, &tasks, &limits).into_iter().map(move |job| (slot, job)))
            .collect();
        for (slot, job) in jobs {
            if self.stop.is_some() {
                // Not submitted: back to waiting for the next run.
                for t in job {
                    self.states[t as usize] = State::Ready;
                    self.progress.in_flight = self.progress.in_flight.saturating_sub(1);
                }
                continue;
            }
            self.submit_job(slot, job)?;
        }
        Ok(())
    }

    fn submit_job(&mut self, slot: usize, mut tasks: Vec<TaskIndex>) -> Result<(), ExecError> {
        // The budget: reserve each task's worst case at the batch price; what does not fit waits
        // in the queue for jobs in flight to settle, or stops the run when nothing is in flight.
        let mut fits = Vec::new();
        for t in tasks {
            let worst = self.worst_case(t, Tier::Batch);
            match self.ledger.admit(self.this_run(), worst) {
                Admission::Go => {
                    self.ledger.reserve(t, worst);
                    fits.push(t);
                }
                Admission::Wait => {
                    self.budget_deferred = true;
                    if let Some(lane) = &mut self.lane {
                        lane.queue[slot].push(t);
                    }
                }
                Admission::Stop => {
                    self.states[t as usize] = State::Ready;
                    self.progress.in_flight = self.progress.in_flight.saturating_sub(1);
                    self.stop_for_budget(worst);
                }
            }
        }
        tasks = fits;
        if tasks.is_empty() {
            return Ok(());
        }
        let model = self.slot_models[slot].clone();
        let Some(lane) = &mut self.lane else { return Ok(()) };
        let display = lane.next_display_name();
        let with_attempts: Vec<(TaskIndex, u32)> = tasks.iter().map(|t| (*t, self.attempts[*t as usize] + 1)).collect();
        let plan = &self.ctx.plan;
        self.journal.append(&Record::BatchIntent(BatchIntent {
            display_name: display.clone(),
            model: model.clone(),
            ids: tasks.iter().map(|t| plan.tasks[*t as usize].id.to_string()).collect(),
            fps: tasks.iter().map(|t| plan.tasks[*t as usize].fingerprint.to_hex()).collect(),
            at: now_string(),
        }));
        self.journal.commit().map_err(ExecError::Journal)?;
        let inputs: Vec<UnitInput> = with_attempts.iter().map(|(t, a)| self.unit_input(*t, *a)).collect();
        let Some(lane) = &mut self.lane else { return Ok(()) };
        let api = lane.api.clone();
        let limits = lane.limits;
        lane.ops.spawn(submit(self.ctx.clone(), api, display.clone(), model.clone(), inputs, limits));
        lane.open.insert(display.clone(), OpenJob { model: model.clone(), name: None, tasks: with_attempts });
        self.emit(&Event::Note {
            message: format!("submitting batch job {display}: {} tasks of {model}", tasks.len()),
        });
        Ok(())
    }

    fn batch_estimate(&self, i: TaskIndex) -> Usd {
        let task = &self.ctx.plan.tasks[i as usize];
        TaskView::new(&self.ctx.manifest, task).model.cost(&task.estimate, Tier::Batch)
    }

    fn on_batch_event(&mut self, event: BatchEvent) -> Result<(), ExecError> {
        match event {
            BatchEvent::Created { display, result: Ok(name) } => {
                let Some(lane) = &mut self.lane else { return Ok(()) };
                let Some(job) = lane.open.get_mut(&display) else { return Ok(()) };
                job.name = Some(name.clone());
                let tasks = job.tasks.clone();
                let model = job.model.clone();
                let base_url = lane.base_url.clone();
                let plan = self.ctx.plan.clone();
                self.journal.append(&Record::BatchSubmitted(BatchSubmitted {
                    name: name.clone(),
                    display_name: display.clone(),
                    base_url,
                    model,
                    ids: tasks.iter().map(|(t, _)| plan.tasks[*t as usize].id.to_string()).collect(),
                    fps: tasks.iter().map(|(t, _)| plan.tasks[*t as usize].fingerprint.to_hex()).collect(),
                    input_file: None,
                    at: now_string(),
                }));
                self.journal.commit().map_err(ExecError::Journal)?;
                let inputs: Vec<UnitInput> = tasks.iter().map(|(t, a)| self.unit_input(*t, *a)).collect();
                if let Some(lane) = &mut self.lane {
                    let (api, limits, dir) = (lane.api.clone(), lane.limits, lane.state_dir.clone());
                    lane.ops.spawn(watch(self.ctx.clone(), api, display, name.clone(), inputs, limits, dir));
                }
                self.emit(&Event::Note { message: format!("batch job {name} submitted ({} tasks)", tasks.len()) });
            }
            BatchEvent::Created { display, result: Err(error) } => {
                let tasks =
                    self.lane.as_mut().and_then(|l| l.open.remove(&display)).map(|j| j.tasks).unwrap_or_default();
                self.journal.append(&Record::BatchFinished(BatchFinished {
                    name: display.clone(),
                    state: "NOT_CREATED".into(),
                    at: now_string(),
                }));
                let message = redact_text(&error.to_string());
                self.emit(&Event::Note { message: format!("batch job {display} could not be created: {message}") });
                let class = classify(&error);
                for (t, attempt) in tasks {
                    self.leave_batch(t);
                    if class.retryable(&self.options.retry) || self.lane.as_ref().is_some_and(|l| l.fallback) {
                        self.requeue_from_batch(t, attempt, &message);
                    } else {
                        self.on_failure(t, attempt, class, &error, 0);
                    }
                }
            }
            BatchEvent::Finished { display, name, state, error, results } => {
                let job = self.lane.as_mut().and_then(|l| l.open.remove(&display));
                self.journal.append(&Record::BatchFinished(BatchFinished {
                    name: name.clone(),
                    state: state.clone(),
                    at: now_string(),
                }));
                let mut answered = std::collections::HashSet::new();
                let count = results.len();
                for (t, attempt, result) in results {
                    answered.insert(t);
                    if self.states[t as usize] == State::InBatch {
                        self.on_unit_result(t, attempt, result, 0);
                    }
                }
                let why = match &error {
                    Some(e) => format!("batch job {name} ended {state}: {}", redact_text(e)),
                    None => format!("batch job {name} ended {state}"),
                };
                self.emit(&Event::Note { message: format!("{why} ({count} results)") });
                for (t, attempt) in job.map(|j| j.tasks).unwrap_or_default() {
                    if !answered.contains(&t) && self.states[t as usize] == State::InBatch {
                        self.leave_batch(t);
                        self.requeue_from_batch(t, attempt, &why);
                    }
                }
            }
        }
        Ok(())
    }

    /// A task comes out of a batch job without a result.
    fn leave_batch(&mut self, t: TaskIndex) {
        self.release_reservation(t);
        self.progress.in_flight = self.progress.in_flight.saturating_sub(1);
    }

    /// Back to the queue (batch again, or interactive when `--interactive-fallback`), counting an
    /// attempt so that a job that always expires cannot loop forever.
    fn requeue_from_batch(&mut self, t: TaskIndex, attempt: u32, why: &str) {
        self.attempts[t as usize] += 1;
        if self.attempts[t as usize] >= self.options.retry.attempts {
            let base = self.task_record(t, TaskStatus::Failed, attempt, 0, Tier::Batch);
            let record = TaskRecord {
                error: Some(ErrorRecord { class: "batch_failed".into(), message: why.to_owned(), http: None }),
                ..base
            };
            self.finish_failed(t, record, State::Failed, why.to_owned());
            return;
        }
        let fallback = self.lane.as_ref().is_some_and(|l| l.fallback || l.mode == BatchMode::FirstWave);
        if fallback {
            self.states[t as usize] = State::Ready;
            let slot = self.slot_of[t as usize];
            self.ready[slot].push_back(t);
        } else {
            self.queue_for_batch(t);
        }
    }

    /// On Ctrl-C: jobs on the server keep running (they are paid for); say how to collect them.
    fn leave_batches_running(&mut self) {
        let Some(lane) = &mut self.lane else { return };
        lane.ops.abort_all();
        let open: Vec<String> = lane.open.values().filter_map(|j| j.name.clone()).collect();
        let pending = lane.open.len();
        if pending > 0 {
            let names = if open.is_empty() { String::new() } else { format!(" ({})", open.join(", ")) };
            self.emit(&Event::Note {
                message: format!(
                    "{pending} batch jobs are still running on the server{names}; they are paid for. Run the same command again to collect their results, or `nanobatch cancel DIR` to cancel them"
                ),
            });
        }
    }
}

async fn lane_next(lane: &mut Option<BatchLane>) -> Option<BatchEvent> {
    match lane {
        Some(l) => match l.ops.join_next().await {
            Some(Ok(event)) => Some(event),
            Some(Err(_)) | None => None,
        },
        None => std::future::pending().await,
    }
}

/// The most text and thinking tokens an answer to a task can carry: the job's
/// `max_output_tokens` (sent with the request), else the model's output limit.
fn output_bound(view: &TaskView<'_>) -> u64 {
    u64::from(view.job.generation.max_output_tokens.unwrap_or(view.model.max_output_tokens))
}

/// What a task's note says when the server reported more tokens than any request can use.
fn implausible_usage_note(reported: &TokenCounts, counted: Usd) -> String {
    let most =
        [reported.input_text, reported.input_image, reported.output_image, reported.output_text, reported.thinking]
            .into_iter()
            .max()
            .unwrap_or(0);
    format!(
        "the server reported implausible usage ({most} tokens in one count; no request can use more than {}); counted at the estimate, {counted}",
        crate::catalog::MAX_PLAUSIBLE_TOKENS
    )
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn store_message(error: &crate::checkpoint::store::StoreError) -> String {
    if error.is_disk_full() {
        format!("{error} (the disk is full: free space, then run again to resume)")
    } else {
        error.to_string()
    }
}

fn now_string() -> String {
    now()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Time until the next midnight in America/Los_Angeles (when daily quotas reset), and a label.
pub fn next_pacific_midnight() -> (Duration, String) {
    let fallback = (Duration::from_secs(3600), "in an hour".to_owned());
    let Ok(tz) = jiff::tz::TimeZone::get("America/Los_Angeles") else { return fallback };
    let now = jiff::Timestamp::now().to_zoned_datetime(tz.clone());
    let Ok(tomorrow) = now.date().tomorrow() else { return fallback };
    let Ok(midnight) = tomorrow.to_zoned_datetime(tz) else { return fallback };
    let secs = midnight.timestamp().as_second() - now.timestamp().as_second();
    (Duration::from_secs(secs.max(1) as u64), midnight.to_string())
}
