//! Builds a [`Report`] from the plan snapshot and the journal (pure; no file access).
//!
//! Records of fingerprints the plan no longer has (a removed row, an edited prompt's earlier
//! version) are not dropped: their spend is its own group, [`REMOVED_GROUP`], in every total.

use std::collections::{BTreeMap, HashMap};

use super::schema::{
    Breakdown, Costs, Drift, Latency, REMOVED_GROUP, REPORT_VERSION, RemovedTaskEntry, Report, ReviewCounts, RunInfo,
    SupersededEntry, TaskCounts, TaskEntry, TaskReview, Tokens,
};
use crate::catalog::{TokenCounts, Usd};
use crate::checkpoint::records::{AttemptRecord, Record, SupersededRecord, TaskRecord, TaskStatus, now};
use crate::checkpoint::snapshot::{PlanSnapshot, SnapshotTask};
use crate::review::log::Verdict;
use crate::review::marks::Marks;

/// The outcome of one planned task as the journal tells it: only what the report and `status`
/// show, so that a report of a million tasks never holds the journal's records.
#[derive(Debug, Clone, Default)]
pub struct TaskOutcome {
    /// From the task's last record; `None` while no outcome is recorded.
    pub last: Option<Finished>,
    /// Attempts recorded before the outcome (failed tries, retries).
    pub attempts: u32,
    pub attempt_usage: TokenCounts,
    pub attempt_cost: Usd,
    pub attempt_possibly_billed: Usd,
    /// Attempts whose outcome was unknown (counted as possibly billed).
    pub possibly_billed_attempts: u32,
    /// Latencies (ms) of attempts that got an answer.
    pub attempt_latencies: Vec<u64>,
    /// Requests sent without any outcome (interrupted runs, or in flight): possibly billed.
    pub unanswered: u32,
    pub unanswered_usd: Usd,
    /// `succeeded`, `failed`, `no_image`, `skipped`, `pending`.
    pub status: &'static str,
}

impl TaskOutcome {
    /// Tokens of every answered attempt and of the outcome.
    pub fn actual_usage(&self) -> TokenCounts {
        let mut usage = self.attempt_usage;
        if let Some(r) = &self.last {
            usage.add(&r.usage);
        }
        usage
    }

    pub fn actual_cost(&self) -> Usd {
        self.attempt_cost + self.last.as_ref().map_or(Usd::ZERO, |r| r.cost)
    }

    /// Attempts and requests whose outcome is unknown, at their estimates.
    pub fn possibly_billed(&self) -> Usd {
        self.attempt_possibly_billed + self.unanswered_usd
    }
}

/// What the report keeps of a task record.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: TaskStatus,
    pub attempts: u32,
    pub usage: TokenCounts,
    pub cost: Usd,
    pub outputs: Vec<String>,
    pub finish_reason: Option<String>,
    /// (class, message)
    pub error: Option<(String, String)>,
    pub latency_ms: u64,
    pub size_mismatch: Option<(u32, u32)>,
    pub grounding: Vec<String>,
    /// The first output's content hash: what a review mark is about.
    pub image: Option<[u8; 32]>,
    pub usage_reported: Option<TokenCounts>,
}

impl Finished {
    fn of(r: &TaskRecord) -> Finished {
        Finished {
            status: r.status,
            attempts: r.attempts,
            usage: r.usage,
            cost: r.cost_usd,
            outputs: r.outputs.iter().map(|o| o.path.clone()).collect(),
            finish_reason: r.finish_reason.clone(),
            error: r.error.as_ref().map(|e| (e.class.clone(), e.message.clone())),
            latency_ms: r.latency_ms,
            size_mismatch: r.size_mismatch,
            grounding: r.grounding.iter().map(|g| g.uri.clone()).collect(),
            image: r.outputs.first().and_then(|o| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(o.content_hash().1, &mut hash).ok().map(|()| hash)
            }),
            usage_reported: r.usage_reported,
        }
    }

    /// The first output's content hash in hex, as the journal and the review log write it.
    pub fn image_hex(&self) -> Option<String> {
        self.image.map(hex::encode)
    }

    /// Whether a request was sent for this outcome (a missing input is decided before sending).
    fn was_requested(&self) -> bool {
        self.error.as_ref().is_none_or(|(class, _)| class != "input_missing")
    }
}

/// The runs the journal tells of.
#[derive(Debug, Clone, Default)]
pub struct RunsSeen {
    pub runs: u32,
    /// When the first run started.
    pub started: Option<String>,
    /// The end of the last run: (status, at); `None` while it is in progress.
    pub end: Option<(String, String)>,
}

/// Joins every planned task with its journal records (matched by id and fingerprint), one
/// record at a time.
pub struct Collector<'s> {
    snapshot: &'s PlanSnapshot,
    index: HashMap<(&'s str, &'s str), usize>,
    by_fp: HashMap<&'s str, usize>,
    ids: std::collections::HashSet<&'s str>,
    tasks: Vec<TaskOutcome>,
    /// Fingerprints the plan does not have, in the order the journal first names them.
    removed: Vec<Removed>,
    removed_by_fp: HashMap<String, usize>,
    /// Requests sent and not yet answered: (fingerprint, attempt) → (task, estimate).
    sent: HashMap<(String, u32), (Whose, Usd)>,
    superseded: Vec<SupersededRecord>,
    runs: RunsSeen,
}

/// Which task a record is about.
#[derive(Debug, Clone, Copy)]
enum Whose {
    Planned(usize),
    Removed(usize),
}

/// A task of the journal that the plan no longer has.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    pub id: String,
    pub fp: String,
    /// The plan has a task of this id (with other inputs).
    pub earlier_version: bool,
    pub outcome: TaskOutcome,
}

/// Every task's outcome and the runs, once the whole journal was seen.
#[derive(Debug, Default)]
pub struct Collected {
    pub tasks: Vec<TaskOutcome>,
    pub runs: RunsSeen,
    pub removed: Vec<Removed>,
    /// Superseded outputs, in journal order (the caller may drop those pruned since).
    pub superseded: Vec<SupersededRecord>,
}

impl<'s> Collector<'s> {
    pub fn new(snapshot: &'s PlanSnapshot) -> Collector<'s> {
        let tasks = &snapshot.tasks;
        Collector {
            snapshot,
            index: tasks.iter().enumerate().map(|(i, t)| ((t.id.as_str(), t.fp.as_str()), i)).collect(),
            by_fp: tasks.iter().enumerate().map(|(i, t)| (t.fp.as_str(), i)).collect(),
            ids: tasks.iter().map(|t| t.id.as_str()).collect(),
            tasks: vec![TaskOutcome::default(); tasks.len()],
            removed: Vec::new(),
            removed_by_fp: HashMap::new(),
            sent: HashMap::new(),
            superseded: Vec::new(),
            runs: RunsSeen::default(),
        }
    }

    /// The planned task a record is about: by id and fingerprint, else by fingerprint alone;
    /// else the task the plan no longer has.
    fn task_of(&mut self, id: &str, fp: &str) -> Whose {
        match self.index.get(&(id, fp)).or_else(|| self.by_fp.get(fp)) {
            Some(i) => Whose::Planned(*i),
            None => Whose::Removed(self.removed_of(id, fp)),
        }
    }

    fn removed_of(&mut self, id: &str, fp: &str) -> usize {
        if let Some(&k) = self.removed_by_fp.get(fp) {
            return k;
        }
        let earlier_version = self.ids.contains(id);
        self.removed.push(Removed { id: id.to_owned(), fp: fp.to_owned(), earlier_version, ..Removed::default() });
        self.removed_by_fp.insert(fp.to_owned(), self.removed.len() - 1);
        self.removed.len() - 1
    }

    fn outcome(&mut self, whose: Whose) -> &mut TaskOutcome {
        match whose {
            Whose::Planned(i) => &mut self.tasks[i],
            Whose::Removed(k) => &mut self.removed[k].outcome,
        }
    }

    pub fn add(&mut self, record: &Record) {
        match record {
            Record::Sent(s) => {
                let whose = self.task_of(&s.id, &s.fp);
                self.sent.insert((s.fp.clone(), s.n), (whose, s.estimate_usd));
            }
            Record::Task(t) => {
                self.sent.remove(&(t.fp.clone(), t.attempts));
                let planned = self.index.get(&(t.id.as_str(), t.fp.as_str())).copied().or_else(|| {
                    // A success found by fingerprint (ids can change when an axis gains a value).
                    (t.status == TaskStatus::Succeeded).then(|| self.by_fp.get(t.fp.as_str()).copied()).flatten()
                });
                match planned {
                    Some(i) => self.tasks[i].last = Some(Finished::of(t)),
                    // A planned fingerprint under another id that failed: as before, not this plan's.
                    None if self.by_fp.contains_key(t.fp.as_str()) => {}
                    None => {
                        let k = self.removed_of(&t.id, &t.fp);
                        self.removed[k].outcome.last = Some(Finished::of(t));
                    }
                }
            }
            Record::Attempt(a) => {
                self.sent.remove(&(a.fp.clone(), a.n));
                let whose = self.task_of(&a.id, &a.fp);
                add_attempt(self.outcome(whose), a);
            }
            Record::Superseded(s) => {
                // A removed task's image that a newer one moved aside: list it where it is now.
                if let Some(&k) = self.removed_by_fp.get(&s.fp)
                    && let Some(last) = &mut self.removed[k].outcome.last
                {
                    for (from, to) in s.from.iter().zip(&s.outputs) {
                        for path in last.outputs.iter_mut().filter(|p| *p == from) {
                            path.clone_from(&to.path);
                        }
                    }
                }
                self.superseded.push(s.clone());
            }
            Record::Run(run) => {
                self.runs.runs += 1;
                self.runs.started.get_or_insert_with(|| run.at.clone());
                self.runs.end = None;
            }
            Record::End(end) => self.runs.end = Some((end.status.clone(), end.at.clone())),
            _ => {}
        }
    }

    pub fn finish(mut self) -> Collected {
        let sent: Vec<(Whose, Usd)> = self.sent.drain().map(|(_, v)| v).collect();
        for (whose, estimate) in sent {
            let o = self.outcome(whose);
            o.unanswered += 1;
            o.unanswered_usd += estimate;
        }
        for o in self.tasks.iter_mut().chain(self.removed.iter_mut().map(|r| &mut r.outcome)) {
            o.status = match o.last.as_ref().map(|r| r.status) {
                Some(TaskStatus::Succeeded) => "succeeded",
                Some(TaskStatus::Failed) => "failed",
                Some(TaskStatus::NoImage) => "no_image",
                None => "pending",
            };
        }
        // Pending tasks below a failure are skipped.
        for i in 0..self.tasks.len() {
            if self.tasks[i].status == "pending"
                && self.snapshot.tasks[i].deps.iter().any(|d| {
                    matches!(self.tasks.get(*d as usize).map(|o| o.status), Some("failed" | "no_image" | "skipped"))
                })
            {
                self.tasks[i].status = "skipped";
            }
        }
        Collected { tasks: self.tasks, runs: self.runs, removed: self.removed, superseded: self.superseded }
    }
}

fn add_attempt(o: &mut TaskOutcome, a: &AttemptRecord) {
    o.attempts += 1;
    if let Some(u) = &a.usage {
        o.attempt_usage.add(u);
    }
    o.attempt_cost += a.billed_usd;
    o.attempt_possibly_billed += a.possibly_billed_usd;
    if !a.possibly_billed_usd.is_zero() {
        o.possibly_billed_attempts += 1;
    }
    if a.latency_ms > 0 {
        o.attempt_latencies.push(a.latency_ms);
    }
}

/// Every task's outcome from records already in memory (`status`).
pub fn outcomes(snapshot: &PlanSnapshot, records: &[Record]) -> Vec<TaskOutcome> {
    collect(snapshot, records).tasks
}

/// Everything the journal's records tell about the plan (`status`).
pub fn collect(snapshot: &PlanSnapshot, records: &[Record]) -> Collected {
    let mut collector = Collector::new(snapshot);
    records.iter().for_each(|r| collector.add(r));
    collector.finish()
}

/// The whole report.
pub fn build(snapshot: &PlanSnapshot, collected: Collected, output_dir: &str, marks: &Marks) -> Report {
    let (mut report, outcomes) = summarize(snapshot, collected, output_dir, marks);
    report.tasks = entries(snapshot, outcomes, marks).collect();
    report
}

/// The report without its task entries (`tasks` is empty), and the outcomes to make them from
/// with [`entries`]: a report of many tasks can be written entry by entry, never whole.
pub fn summarize(
    snapshot: &PlanSnapshot,
    collected: Collected,
    output_dir: &str,
    marks: &Marks,
) -> (Report, Vec<TaskOutcome>) {
    let Collected { tasks: outcomes, runs, removed, superseded } = collected;
    let mut totals = Acc::default();
    let mut by_model: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_job: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_size: BTreeMap<String, Acc> = BTreeMap::new();
    let mut drift: BTreeMap<(String, String), (u64, Vec<u64>, u64)> = BTreeMap::new();
    for (task, outcome) in snapshot.tasks.iter().zip(&outcomes) {
        for acc in [
            &mut totals,
            by_model.entry(task.model.clone()).or_default(),
            by_job.entry(task.job.clone()).or_default(),
            by_size.entry(format!("{}@{}", task.ratio, task.size)).or_default(),
        ] {
            acc.add(task, outcome);
        }
        if let Some(r) = &outcome.last
            && r.status == TaskStatus::Succeeded
            && r.usage.output_image != task.est.output_image
        {
            let e =
                drift.entry((task.model.clone(), task.size.clone())).or_insert((task.est.output_image, Vec::new(), 0));
            if !e.1.contains(&r.usage.output_image) {
                e.1.push(r.usage.output_image);
            }
            e.2 += 1;
        }
    }
    if !removed.is_empty() {
        let mut group = Acc::default();
        for r in &removed {
            group.add_outcome(&r.outcome, true);
            // Their spend is in the totals; the plan's task counts are not.
            totals.add_outcome(&r.outcome, false);
        }
        for breakdown in [&mut by_model, &mut by_job, &mut by_size] {
            breakdown.insert(REMOVED_GROUP.to_owned(), group.clone());
        }
    }
    let report = Report {
        report_version: REPORT_VERSION,
        run: run_info(snapshot, runs, output_dir),
        totals: totals.finish(),
        by_model: by_model.into_iter().map(|(k, v)| (k, v.finish())).collect(),
        by_job: by_job.into_iter().map(|(k, v)| (k, v.finish())).collect(),
        by_size: by_size.into_iter().map(|(k, v)| (k, v.finish())).collect(),
        drift: drift
            .into_iter()
            .map(|((model, size), (expected, actual, n))| Drift {
                model,
                size,
                catalogue_image_tokens: expected,
                actual_image_tokens: actual,
                tasks: n,
            })
            .collect(),
        review: (!marks.is_empty()).then(|| review_counts(&outcomes, marks)),
        tasks: Vec::new(),
        no_longer_in_manifest: removed.into_iter().map(removed_entry).collect(),
        superseded: superseded.iter().flat_map(superseded_entries).collect(),
    };
    (report, outcomes)
}

/// Tasks with an image, by the mark on it.
pub fn review_counts(outcomes: &[TaskOutcome], marks: &Marks) -> ReviewCounts {
    let mut counts = ReviewCounts::default();
    for image in outcomes.iter().filter_map(|o| o.last.as_ref().filter(|r| r.status == TaskStatus::Succeeded)) {
        match marks.verdict(image.image_hex().as_deref()) {
            Some(Verdict::Approved) => counts.approved += 1,
            Some(Verdict::Rejected) => counts.rejected += 1,
            _ => counts.pending += 1,
        }
    }
    counts
}

fn removed_entry(r: Removed) -> RemovedTaskEntry {
    let o = r.outcome;
    let (tokens, cost, possibly) = (o.actual_usage().into(), o.actual_cost(), o.possibly_billed());
    let attempts = o.last.as_ref().map_or(o.attempts, |l| l.attempts);
    RemovedTaskEntry {
        id: r.id,
        fp: r.fp,
        earlier_version: r.earlier_version,
        status: o.status.to_owned(),
        attempts,
        outputs: o.last.map(|l| l.outputs).unwrap_or_default(),
        tokens,
        cost_usd: cost,
        possibly_billed_usd: possibly,
    }
}

fn superseded_entries(s: &SupersededRecord) -> impl Iterator<Item = SupersededEntry> + '_ {
    s.outputs.iter().enumerate().map(|(k, o)| SupersededEntry {
        id: s.id.clone(),
        fp: s.fp.clone(),
        path: o.path.clone(),
        sidecar: o.sidecar.clone(),
        original: s.from.get(k).cloned().unwrap_or_default(),
        reason: s.reason.clone(),
        bytes: o.bytes,
        at: s.at.clone(),
    })
}

/// The task entries, in plan order, made as they are consumed.
pub fn entries<'a>(
    snapshot: &'a PlanSnapshot,
    outcomes: Vec<TaskOutcome>,
    marks: &'a Marks,
) -> impl Iterator<Item = TaskEntry> + 'a {
    snapshot.tasks.iter().zip(outcomes).map(move |(task, outcome)| task_entry(task, outcome, marks))
}

fn run_info(snapshot: &PlanSnapshot, runs: RunsSeen, output_dir: &str) -> RunInfo {
    let h = &snapshot.header;
    let (status, finished) = match runs.end {
        Some((status, at)) => (status, Some(at)),
        None => ("in_progress".to_owned(), None),
    };
    RunInfo {
        name: h.name.clone(),
        description: h.description.clone(),
        manifest: h.manifest.clone(),
        manifest_sha256: h.manifest_sha256.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        catalog_version: h.catalog_version.clone(),
        prices_date: h.prices_date.clone(),
        prices_source: h.prices_source.clone(),
        output_dir: output_dir.to_owned(),
        started: runs.started,
        finished,
        generated: now(),
        interrupted: matches!(status.as_str(), "interrupted" | "aborted"),
        status,
        runs: runs.runs,
    }
}

/// The report's entry for a task; the outcome's strings are moved, not copied.
fn task_entry(task: &SnapshotTask, outcome: TaskOutcome, marks: &Marks) -> TaskEntry {
    let (actual, cost, possibly) = (outcome.actual_usage(), outcome.actual_cost(), outcome.possibly_billed());
    let review = outcome
        .last
        .as_ref()
        .filter(|r| r.status == TaskStatus::Succeeded)
        .and_then(|r| marks.get(&r.image_hex()?))
        .map(|m| TaskReview { mark: m.mark.as_str().to_owned(), note: m.note.clone(), at: m.at.clone() });
    let attempts = outcome.last.as_ref().map_or(outcome.attempts, |r| r.attempts);
    let (mut outputs, mut grounding, mut finish_reason, mut error, mut latency_ms, mut size_mismatch) =
        (Vec::new(), Vec::new(), None, None, None, None);
    let mut usage_reported = None;
    if let Some(r) = outcome.last {
        (outputs, grounding, finish_reason, error) = (r.outputs, r.grounding, r.finish_reason, r.error);
        (latency_ms, size_mismatch, usage_reported) = (Some(r.latency_ms), r.size_mismatch, r.usage_reported);
    }
    let (error_class, error_message) = error.unzip();
    TaskEntry {
        id: task.id.clone(),
        job: task.job.clone(),
        step: task.step.clone(),
        key: task.key.clone(),
        variant: task.variant,
        model: task.model.clone(),
        ratio: task.ratio.clone(),
        size: task.size.clone(),
        status: outcome.status.to_owned(),
        attempts,
        outputs,
        tokens: Tokens { estimated: task.est.into(), actual: actual.into() },
        cost_usd: Costs {
            estimated: task.est_usd,
            estimated_batch: task.est_batch_usd,
            actual: cost,
            possibly_billed: possibly,
        },
        finish_reason,
        error_class,
        error_message,
        latency_ms,
        size_mismatch,
        grounding,
        review,
        usage_reported: usage_reported.map(Into::into),
    }
}

#[derive(Default, Clone)]
struct Acc {
    b: Breakdown,
    latencies: Vec<u64>,
}

impl Acc {
    fn add(&mut self, task: &SnapshotTask, outcome: &TaskOutcome) {
        let b = &mut self.b;
        b.tokens.estimated.add(&task.est);
        b.cost_usd.estimated += task.est_usd;
        b.cost_usd.estimated_batch += task.est_batch_usd;
        self.add_outcome(outcome, true);
    }

    /// What the journal says of a task; its status counted when `count_task`.
    fn add_outcome(&mut self, outcome: &TaskOutcome, count_task: bool) {
        let b = &mut self.b;
        if count_task {
            b.tasks.total += 1;
            match outcome.status {
                "succeeded" => b.tasks.succeeded += 1,
                "failed" => b.tasks.failed += 1,
                "no_image" => b.tasks.no_image += 1,
                "skipped" => b.tasks.skipped += 1,
                _ => b.tasks.pending += 1,
            }
            if let Some((class, _)) = outcome.last.as_ref().and_then(|r| r.error.as_ref()) {
                *b.failed_by_class.entry(class.clone()).or_default() += 1;
            }
        }
        let requests = u64::from(outcome.attempts + outcome.unanswered)
            + u64::from(outcome.last.as_ref().is_some_and(Finished::was_requested));
        b.requests += requests;
        b.retries += requests.saturating_sub(1);
        b.possibly_billed_attempts += u64::from(outcome.possibly_billed_attempts + outcome.unanswered);
        b.tokens.actual.add(&outcome.actual_usage());
        b.cost_usd.actual += outcome.actual_cost();
        b.cost_usd.possibly_billed += outcome.possibly_billed();
        self.latencies.extend(&outcome.attempt_latencies);
        if let Some(l) = outcome.last.as_ref().map(|r| r.latency_ms).filter(|l| *l > 0) {
            self.latencies.push(l);
        }
    }

    fn finish(mut self) -> Breakdown {
        self.latencies.sort_unstable();
        let pick = |q: f64| -> u64 {
            if self.latencies.is_empty() {
                return 0;
            }
            let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
            self.latencies[i.min(self.latencies.len() - 1)]
        };
        self.b.latency_ms =
            Latency { p50: pick(0.5), p95: pick(0.95), max: self.latencies.last().copied().unwrap_or(0) };
        let _: &TaskCounts = &self.b.tasks;
        self.b
    }
}
