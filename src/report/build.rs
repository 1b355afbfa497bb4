//! Builds a [`Report`] from the plan snapshot and the journal (pure; no file access).

use std::collections::{BTreeMap, HashMap};

use super::schema::{Breakdown, Costs, Drift, Latency, REPORT_VERSION, Report, RunInfo, TaskCounts, TaskEntry, Tokens};
use crate::catalog::{TokenCounts, Usd};
use crate::checkpoint::records::{AttemptRecord, Record, SentRecord, TaskRecord, TaskStatus, now};
use crate::checkpoint::snapshot::{PlanSnapshot, SnapshotTask};

/// The outcome of one planned task as the journal tells it.
#[derive(Debug, Clone, Default)]
pub struct TaskOutcome<'a> {
    pub record: Option<&'a TaskRecord>,
    pub attempts: Vec<&'a AttemptRecord>,
    /// Requests sent without an outcome (interrupted runs, or in flight): possibly billed.
    pub unanswered: Vec<&'a SentRecord>,
    /// `succeeded`, `failed`, `no_image`, `skipped`, `pending`.
    pub status: &'static str,
}

/// Joins every planned task with its journal records (matched by id and fingerprint).
pub fn outcomes<'a>(snapshot: &PlanSnapshot, records: &'a [Record]) -> Vec<TaskOutcome<'a>> {
    let index: HashMap<(&str, &str), usize> =
        snapshot.tasks.iter().enumerate().map(|(i, t)| ((t.id.as_str(), t.fp.as_str()), i)).collect();
    let by_fp: HashMap<&str, usize> = snapshot.tasks.iter().enumerate().map(|(i, t)| (t.fp.as_str(), i)).collect();
    let mut out: Vec<TaskOutcome<'a>> = vec![TaskOutcome::default(); snapshot.tasks.len()];
    let mut sent: HashMap<(&str, u32), (usize, &'a SentRecord)> = HashMap::new();
    for record in records {
        match record {
            Record::Sent(s) => {
                if let Some(&i) = index.get(&(s.id.as_str(), s.fp.as_str())).or_else(|| by_fp.get(s.fp.as_str())) {
                    sent.insert((s.fp.as_str(), s.n), (i, s));
                }
            }
            Record::Task(t) => {
                sent.remove(&(t.fp.as_str(), t.attempts));
                let i = index.get(&(t.id.as_str(), t.fp.as_str())).or_else(|| {
                    // A success found by fingerprint (ids can change when an axis gains a value).
                    (t.status == TaskStatus::Succeeded).then(|| by_fp.get(t.fp.as_str())).flatten()
                });
                if let Some(&i) = i {
                    out[i].record = Some(t);
                }
            }
            Record::Attempt(a) => {
                sent.remove(&(a.fp.as_str(), a.n));
                if let Some(&i) = index.get(&(a.id.as_str(), a.fp.as_str())).or_else(|| by_fp.get(a.fp.as_str())) {
                    out[i].attempts.push(a);
                }
            }
            _ => {}
        }
    }
    for (i, s) in sent.into_values() {
        out[i].unanswered.push(s);
    }
    for (i, o) in out.iter_mut().enumerate() {
        o.status = match o.record.map(|r| r.status) {
            Some(TaskStatus::Succeeded) => "succeeded",
            Some(TaskStatus::Failed) => "failed",
            Some(TaskStatus::NoImage) => "no_image",
            None => "pending",
        };
        let _ = i;
    }
    // Pending tasks below a failure are skipped.
    for i in 0..out.len() {
        if out[i].status == "pending"
            && snapshot.tasks[i]
                .deps
                .iter()
                .any(|d| matches!(out.get(*d as usize).map(|o| o.status), Some("failed" | "no_image" | "skipped")))
        {
            out[i].status = "skipped";
        }
    }
    out
}

/// The whole report.
pub fn build(snapshot: &PlanSnapshot, records: &[Record], output_dir: &str) -> Report {
    let outcomes = outcomes(snapshot, records);
    let mut totals = Acc::default();
    let mut by_model: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_job: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_size: BTreeMap<String, Acc> = BTreeMap::new();
    let mut drift: BTreeMap<(String, String), (u64, Vec<u64>, u64)> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(snapshot.tasks.len());
    for (task, outcome) in snapshot.tasks.iter().zip(&outcomes) {
        let entry = task_entry(task, outcome);
        for acc in [
            &mut totals,
            by_model.entry(task.model.clone()).or_default(),
            by_job.entry(task.job.clone()).or_default(),
            by_size.entry(format!("{}@{}", task.ratio, task.size)).or_default(),
        ] {
            acc.add(task, outcome, &entry);
        }
        if let Some(r) = outcome.record
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
        tasks.push(entry);
    }
    Report {
        report_version: REPORT_VERSION,
        run: run_info(snapshot, records, output_dir),
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
        tasks,
    }
}

fn run_info(snapshot: &PlanSnapshot, records: &[Record], output_dir: &str) -> RunInfo {
    let h = &snapshot.header;
    let mut started = None;
    let mut runs = 0;
    let mut last_run_index = 0;
    for (i, r) in records.iter().enumerate() {
        if let Record::Run(run) = r {
            runs += 1;
            last_run_index = i;
            if started.is_none() {
                started = Some(run.at.clone());
            }
        }
    }
    let end = records[last_run_index..].iter().rev().find_map(|r| match r {
        Record::End(e) => Some(e),
        _ => None,
    });
    let status = end.map_or_else(|| "in_progress".to_owned(), |e| e.status.clone());
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
        started,
        finished: end.map(|e| e.at.clone()),
        generated: now(),
        interrupted: matches!(status.as_str(), "interrupted" | "aborted"),
        status,
        runs,
    }
}

fn task_entry(task: &SnapshotTask, outcome: &TaskOutcome<'_>) -> TaskEntry {
    let record = outcome.record;
    let mut actual = TokenCounts::default();
    let mut cost = Usd::ZERO;
    let mut possibly = Usd::ZERO;
    for a in &outcome.attempts {
        if let Some(u) = &a.usage {
            actual.add(u);
        }
        cost += a.billed_usd;
        possibly += a.possibly_billed_usd;
    }
    for s in &outcome.unanswered {
        possibly += s.estimate_usd;
    }
    if let Some(r) = record {
        actual.add(&r.usage);
        cost += r.cost_usd;
    }
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
        attempts: record.map_or(outcome.attempts.len() as u32, |r| r.attempts),
        outputs: record.map(|r| r.outputs.iter().map(|o| o.path.clone()).collect()).unwrap_or_default(),
        tokens: Tokens { estimated: task.est.into(), actual: actual.into() },
        cost_usd: Costs {
            estimated: task.est_usd,
            estimated_batch: task.est_batch_usd,
            actual: cost,
            possibly_billed: possibly,
        },
        finish_reason: record.and_then(|r| r.finish_reason.clone()),
        error_class: record.and_then(|r| r.error.as_ref().map(|e| e.class.clone())),
        error_message: record.and_then(|r| r.error.as_ref().map(|e| e.message.clone())),
        latency_ms: record.map(|r| r.latency_ms),
        size_mismatch: record.and_then(|r| r.size_mismatch),
        grounding: record.map(|r| r.grounding.iter().map(|g| g.uri.clone()).collect()).unwrap_or_default(),
    }
}

#[derive(Default)]
struct Acc {
    b: Breakdown,
    latencies: Vec<u64>,
}

impl Acc {
    fn add(&mut self, task: &SnapshotTask, outcome: &TaskOutcome<'_>, entry: &TaskEntry) {
        let b = &mut self.b;
        b.tasks.total += 1;
        match outcome.status {
            "succeeded" => b.tasks.succeeded += 1,
            "failed" => b.tasks.failed += 1,
            "no_image" => b.tasks.no_image += 1,
            "skipped" => b.tasks.skipped += 1,
            _ => b.tasks.pending += 1,
        }
        if let Some(class) = &entry.error_class {
            *b.failed_by_class.entry(class.clone()).or_default() += 1;
        }
        let requests = (outcome.attempts.len() + outcome.unanswered.len()) as u64
            + u64::from(outcome.record.is_some_and(|r| r.error.as_ref().is_none_or(|e| e.class != "input_missing")));
        b.requests += requests;
        b.retries += requests.saturating_sub(1);
        b.possibly_billed_attempts += outcome.attempts.iter().filter(|a| !a.possibly_billed_usd.is_zero()).count()
            as u64
            + outcome.unanswered.len() as u64;

        b.tokens.estimated.add(&task.est);
        let a = &entry.tokens.actual;
        b.tokens.actual.add(&TokenCounts {
            input_text: a.input_text,
            input_image: a.input_image,
            output_image: a.output_image,
            output_text: a.output_text,
            thinking: a.thinking,
        });
        b.cost_usd.estimated += task.est_usd;
        b.cost_usd.estimated_batch += task.est_batch_usd;
        b.cost_usd.actual += entry.cost_usd.actual;
        b.cost_usd.possibly_billed += entry.cost_usd.possibly_billed;
        self.latencies.extend(outcome.attempts.iter().filter(|a| a.latency_ms > 0).map(|a| a.latency_ms));
        if let Some(l) = entry.latency_ms.filter(|l| *l > 0) {
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
