//! `.nanobatch/plan.jsonl`: the plan a run executed, one compact line per task, so that
//! `status` and `report` work from the run directory alone (the manifest may have moved or
//! changed since).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::now;
use crate::catalog::{Tier, TokenCounts, Usd};
use crate::fsutil::{self, FsError};
use crate::manifest::Manifest;
use crate::manifest::model::JobBody;
use crate::plan::{Plan, TaskView};

pub const FORMAT_NAME: &str = "nanobatch-plan";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotHeader {
    pub format: String,
    pub version: u32,
    pub tool: String,
    pub created: String,
    pub name: String,
    pub manifest: String,
    pub manifest_sha256: String,
    #[serde(default)]
    pub description: Option<String>,
    pub catalog_version: String,
    pub prices_date: String,
    pub prices_source: String,
    pub jobs: Vec<SnapshotJob>,
    /// Attempts per task allowed by the retry policy.
    pub attempts_per_task: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotJob {
    pub name: String,
    pub models: Vec<String>,
    pub sizes: Vec<String>,
    #[serde(default)]
    pub steps: Vec<String>,
    #[serde(default)]
    pub prompts: Vec<String>,
    #[serde(default)]
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotTask {
    pub id: String,
    pub fp: String,
    pub job: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub variant: u32,
    pub model: String,
    pub ratio: String,
    pub size: String,
    pub pixels: (u32, u32),
    /// Output name without extension.
    pub out: String,
    /// Indices (in this file) of the tasks this one depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<u32>,
    pub est: TokenCounts,
    pub est_usd: Usd,
    pub est_batch_usd: Usd,
    /// The prompt as sent (cut at 2,000 characters).
    pub prompt: String,
    /// The row's variables (cut at 200 characters each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

#[derive(Debug, Clone)]
pub struct PlanSnapshot {
    pub header: SnapshotHeader,
    pub tasks: Vec<SnapshotTask>,
}

impl PlanSnapshot {
    /// Writes the snapshot of `plan` task by task, never whole in memory (it would be ≈1 KB per
    /// task, and memory freed after planning is not given back), unless the file already holds
    /// these tasks (a resume of an unchanged plan then writes nothing: 50 MB for 100,000 tasks).
    /// Writes the snapshot unless the one on disk is the same plan; whether it changed.
    pub fn write_plan(manifest: &Manifest, plan: &Plan, path: &Path) -> Result<bool, FsError> {
        let mut tasks = Vec::with_capacity(256 * plan.tasks.len());
        for task in &plan.tasks {
            let _ = serde_json::to_writer(&mut tasks, &snapshot_task(manifest, task));
            tasks.push(b'\n');
        }
        write_unless_unchanged(&header(manifest), &tasks, path)
    }

    pub fn read(path: &Path) -> Result<PlanSnapshot, String> {
        let file =
            fsutil::open(path).map_err(|e| format!("cannot read {}: {}", path.display(), fsutil::io_reason(&e)))?;
        let mut lines = BufReader::new(file).lines();
        let header = parse_header(path, lines.next())?;
        let mut tasks = Vec::new();
        for (i, line) in lines.enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            let task = serde_json::from_str(&line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 2))?;
            tasks.push(task);
        }
        Ok(PlanSnapshot { header, tasks })
    }

    /// The first line of `path`, without reading the tasks.
    pub fn read_header(path: &Path) -> Result<SnapshotHeader, String> {
        let file =
            fsutil::open(path).map_err(|e| format!("cannot read {}: {}", path.display(), fsutil::io_reason(&e)))?;
        parse_header(path, BufReader::new(file).lines().next())
    }
}

fn parse_header(path: &Path, first: Option<std::io::Result<String>>) -> Result<SnapshotHeader, String> {
    let first = first.ok_or_else(|| format!("{} is empty", path.display()))?.map_err(|e| e.to_string())?;
    let header: SnapshotHeader =
        serde_json::from_str(&first).map_err(|e| format!("{} has a bad header: {e}", path.display()))?;
    if header.version > FORMAT_VERSION {
        return Err(format!("{} was written by a newer nanobatch; upgrade to read it", path.display()));
    }
    Ok(header)
}

/// The snapshot's first line: what the run is, and its manifest's jobs.
fn header(manifest: &Manifest) -> SnapshotHeader {
    SnapshotHeader {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        tool: env!("CARGO_PKG_VERSION").into(),
        created: now(),
        name: manifest.name.clone(),
        manifest: manifest.file.display().to_string(),
        manifest_sha256: manifest.hash.clone(),
        description: manifest.description.clone(),
        catalog_version: manifest.catalog.catalog_version.clone(),
        prices_date: manifest.catalog.prices_date.clone(),
        prices_source: manifest.catalog.prices_source.clone(),
        jobs: manifest
            .jobs
            .iter()
            .map(|j| SnapshotJob {
                name: j.name.clone(),
                models: j.models.clone(),
                sizes: j.sizes.iter().map(|s| s.label()).collect(),
                steps: match &j.body {
                    JobBody::Conversation { steps } => steps.iter().map(|s| s.name.clone()).collect(),
                    JobBody::Single { .. } => Vec::new(),
                },
                prompts: match &j.body {
                    JobBody::Single { prompts } => prompts.iter().map(|p| p.name.clone()).collect(),
                    JobBody::Conversation { .. } => Vec::new(),
                },
                columns: j.rows.columns.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
        attempts_per_task: manifest.retry.attempts,
    }
}

/// Writes a snapshot made of `header` and the serialized `tasks` (one JSON line each), unless
/// the file holds the same tasks under the same header but for its creation time.
fn write_unless_unchanged(header: &SnapshotHeader, tasks: &[u8], path: &Path) -> Result<bool, FsError> {
    if let Ok(existing) = std::fs::read(path)
        && let Some(newline) = existing.iter().position(|&b| b == b'\n')
        && existing[newline + 1..] == tasks[..]
        && serde_json::from_slice::<SnapshotHeader>(&existing[..newline])
            .is_ok_and(|old| SnapshotHeader { created: old.created.clone(), ..header.clone() } == old)
    {
        return Ok(false);
    }
    let mut line = serde_json::to_vec(header).unwrap_or_default();
    line.push(b'\n');
    fsutil::write_atomic_parts(path, &[&line, tasks], true)?;
    Ok(true)
}

fn snapshot_task(manifest: &Manifest, task: &crate::plan::Task) -> SnapshotTask {
    let view = TaskView::new(manifest, task);
    let job = view.job;
    let row = &job.rows.rows[task.row as usize];
    let vars = job
        .rows
        .columns
        .iter()
        .zip(row.values.iter())
        .map(|(c, v)| (c.to_string(), v.as_deref().unwrap_or("").chars().take(200).collect()))
        .collect();
    let prompt_name = match &job.body {
        JobBody::Single { prompts } if prompts.len() > 1 => Some(prompts[task.prompt as usize].name.clone()),
        _ => None,
    };
    SnapshotTask {
        id: task.id.to_string(),
        fp: task.fingerprint.to_hex(),
        job: job.name.clone(),
        key: row.key.to_string(),
        prompt_name,
        ref_set: (job.ref_sets.len() > 1).then(|| job.ref_sets[task.ref_set as usize].name.clone()),
        step: view.step_name().map(str::to_owned),
        variant: task.variant,
        model: view.model.id.clone(),
        ratio: task.ratio.to_string(),
        size: task.size.to_string(),
        pixels: task.pixels,
        out: task.output.to_string(),
        deps: task.deps().collect(),
        est: task.estimate,
        est_usd: view.model.cost(&task.estimate, Tier::Interactive),
        est_batch_usd: view.model.cost(&task.estimate, Tier::Batch),
        prompt: task.prompt_text.chars().take(2000).collect(),
        vars,
        refs: task.refs.iter().map(|r| r.shown.clone()).collect(),
    }
}

/// Writes `text` to a file atomically (small state files).
pub fn write_text(path: &Path, text: &str) -> Result<(), FsError> {
    let mut buf = Vec::with_capacity(text.len());
    let _ = buf.write_all(text.as_bytes());
    fsutil::write_atomic(path, &buf)
}
